"""Admin: a read-only window on custody state, with actions that call services.

Custody records change only through services (which log every change), so
the admin never edits them directly.
"""

from django.contrib import admin, messages
from django.db.models import Case as CaseWhen  # not custody's Case model
from django.db.models import IntegerField, Value, When
from django.utils.html import format_html

from . import services
from .models import (
    ApiToken,
    Blob,
    Case,
    Checkpoint,
    Cosignature,
    Evidence,
    LogEntry,
    Membership,
    ResumableUpload,
    SigningKey,
    Timestamp,
    User,
    WitnessStatus,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["username", "role", "is_active", "last_login", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["username", "email"]
    exclude = ["password"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ["reference", "title", "created_by", "created_at"]
    search_fields = ["reference", "title"]
    inlines = [MembershipInline]


@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyAdmin):
    list_display = ["original_name", "case", "blob", "media_type", "custodian", "received_at", "log_index"]
    list_filter = ["media_type"]
    search_fields = ["original_name", "blob__sha256", "case__reference"]


@admin.register(ResumableUpload)
class ResumableUploadAdmin(ReadOnlyAdmin):
    """Uploads in progress over tus; unfinished ones expire on their own (beat)."""

    list_display = ["id", "case", "created_by", "offset", "length", "updated_at", "evidence"]
    search_fields = ["case__reference", "created_by__username"]


@admin.register(Blob)
class BlobAdmin(ReadOnlyAdmin):
    list_display = ["sha256", "size", "stored_at"]
    search_fields = ["sha256", "sha1", "md5"]


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyAdmin):
    list_display = ["index", "time", "action", "actor", "case", "evidence"]
    list_filter = ["action"]
    readonly_fields = ["index", "time", "action", "actor", "case", "evidence", "leaf_text"]
    exclude = ["leaf", "leaf_hash"]

    @admin.display(description="leaf (canonical JSON)")
    def leaf_text(self, obj):
        return bytes(obj.leaf).decode()


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["size", "created_at"]
    exclude = ["root"]


@admin.register(Timestamp)
class TimestampAdmin(ReadOnlyAdmin):
    list_display = ["checkpoint", "tsa_url", "gen_time", "created_at"]
    list_filter = ["tsa_url"]
    exclude = ["token"]


@admin.register(WitnessStatus)
class WitnessStatusAdmin(ReadOnlyAdmin):
    """Where each witness stands; refusals (rollback, fork) are shown first and in red."""

    list_display = [
        "witness_name",
        "state_shown",
        "last_cosigned_size",
        "last_attempt_at",
        "last_success_at",
        "last_error",
        "url",
    ]
    list_filter = ["state"]

    def get_queryset(self, request):
        order = CaseWhen(
            When(state=WitnessStatus.State.REFUSED, then=Value(0)),
            When(state=WitnessStatus.State.UNREACHABLE, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        return super().get_queryset(request).annotate(urgency=order).order_by("urgency", "witness_name")

    @admin.display(description="state", ordering="state")
    def state_shown(self, obj):
        if obj.state == WitnessStatus.State.REFUSED:
            return format_html('<strong style="color:#ba2121">{}</strong>', obj.get_state_display())
        return obj.get_state_display()


@admin.register(Cosignature)
class CosignatureAdmin(ReadOnlyAdmin):
    list_display = ["checkpoint", "witness_name", "signed_at", "received_at"]
    list_filter = ["witness_name"]


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["keyid", "purpose", "name", "valid_from", "valid_until"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "user", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # the changelist and its actions, never the edit form

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            services.revoke_token(actor=request.user, token=token, client=request.META.get("REMOTE_ADDR"))
        messages.success(request, f"{queryset.count()} token(s) revoked.")
