"""Input and output shapes of the REST API."""

from __future__ import annotations

from rest_framework import serializers

from .models import Case, Evidence, SigningKey, Transfer


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    label = serializers.CharField(required=False, allow_blank=True, max_length=100)
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text="for an account with a second factor: the current code from its app, or a recovery code",
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    prefix = serializers.CharField()


class CaseInputSerializer(serializers.Serializer):
    reference = serializers.CharField(max_length=100)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class CaseSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username")
    members = serializers.SerializerMethodField()
    evidence_count = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "reference",
            "title",
            "description",
            "created_at",
            "created_by",
            "members",
            "evidence_count",
        ]

    def get_members(self, case) -> list[str]:
        return [u.username for u in case.members.order_by("username")]

    def get_evidence_count(self, case) -> int:
        return case.evidence.count()


class EvidenceInputSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False)
    case = serializers.CharField(help_text="case id (UUID) or reference")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    source = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    sha256 = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="optional: SHA-256 the client computed; a mismatch is refused with 422",
    )


class EvidenceSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob.sha256")
    sha1 = serializers.CharField(source="blob.sha1")
    md5 = serializers.CharField(source="blob.md5")
    size = serializers.IntegerField(source="blob.size")
    case = serializers.UUIDField(source="case.id")
    case_reference = serializers.CharField(source="case.reference")
    submitted_by = serializers.CharField(source="submitted_by.username")
    custodian = serializers.CharField(source="custodian.username")
    pending_transfer = serializers.SerializerMethodField()

    class Meta:
        model = Evidence
        fields = [
            "id",
            "case",
            "case_reference",
            "original_name",
            "description",
            "source",
            "sha256",
            "sha1",
            "md5",
            "size",
            "media_type",
            "submitted_by",
            "custodian",
            "pending_transfer",
            "received_at",
            "log_index",
            "receipt",
        ]

    def get_pending_transfer(self, evidence) -> dict | None:
        transfer = evidence.transfers.filter(status=Transfer.Status.PENDING).first()
        return TransferSerializer(transfer).data if transfer else None


class SigningKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SigningKey
        fields = ["keyid", "purpose", "name", "public_key_pem", "valid_from", "valid_until"]


class KeysSerializer(serializers.Serializer):
    log_vkey = serializers.CharField()
    keys = SigningKeySerializer(many=True)


class TransferInputSerializer(serializers.Serializer):
    to_user = serializers.CharField(help_text="username of the receiver")
    purpose = serializers.CharField(max_length=500)
    location = serializers.CharField(max_length=500)


class DownloadRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class ExportRequestSerializer(serializers.Serializer):
    include_file = serializers.BooleanField(required=False, default=False)


class TransferDecisionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)


class TransferSerializer(serializers.ModelSerializer):
    evidence = serializers.UUIDField(source="evidence.id")
    from_user = serializers.CharField(source="from_user.username")
    to_user = serializers.CharField(source="to_user.username")

    class Meta:
        model = Transfer
        fields = [
            "id",
            "evidence",
            "from_user",
            "to_user",
            "purpose",
            "location",
            "status",
            "released_at",
            "release_log_index",
            "decided_at",
            "decision_log_index",
            "decision_note",
        ]
