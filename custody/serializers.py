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


# --- shapes the schema states (custody.api.ContractSchema) ---------------------


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API (custody.api.exception_handler)."""

    detail = serializers.CharField()
    errors = serializers.JSONField(
        required=False, help_text="on a 400 for invalid fields: the message list of each field"
    )


class PaginatedEvidenceSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = EvidenceSerializer(many=True)


class DsseSignatureSerializer(serializers.Serializer):
    keyid = serializers.CharField(required=False)
    sig = serializers.CharField()


class DsseEnvelopeSerializer(serializers.Serializer):
    """A DSSE envelope (receipts, the trust root, analysis results)."""

    payloadType = serializers.CharField()  # noqa: N815 (the DSSE field name)
    payload = serializers.CharField(help_text="base64 of the signed statement")
    signatures = DsseSignatureSerializer(many=True)


class TrustRootChainSerializer(serializers.Serializer):
    versions = DsseEnvelopeSerializer(many=True)


class LogEntryItemSerializer(serializers.Serializer):
    """One leaf of the log: in full (``leaf`` and ``entry``), or redacted to its leaf hash."""

    index = serializers.IntegerField()
    leaf = serializers.CharField(required=False, help_text="base64 of the exact leaf bytes")
    entry = serializers.DictField(required=False, help_text="the leaf decoded")
    redacted = serializers.BooleanField(required=False)
    leaf_hash = serializers.CharField(required=False, help_text="base64 of the RFC 6962 leaf hash")


class InclusionProofSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    size = serializers.IntegerField()
    hashes = serializers.ListField(child=serializers.CharField(), help_text="base64 RFC 6962 hashes")


class ConsistencyProofSerializer(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    hashes = serializers.ListField(child=serializers.CharField(), help_text="base64 RFC 6962 hashes")


class TimestampTokenSerializer(serializers.Serializer):
    tsa_url = serializers.CharField()
    gen_time = serializers.CharField(help_text="RFC 3339, a copy of the time inside the token")
    token = serializers.CharField(help_text="base64 of the DER TimeStampToken")


class TimestampsSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    checkpoint = serializers.CharField()
    stamped = serializers.CharField(help_text="SHA-256 of the bytes each token covers")
    timestamps = TimestampTokenSerializer(many=True)


class UploadStatusSerializer(serializers.Serializer):
    """A resumable upload's progress, and its evidence once complete."""

    id = serializers.UUIDField()
    case = serializers.UUIDField()
    length = serializers.IntegerField()
    offset = serializers.IntegerField()
    complete = serializers.BooleanField()
    expires = serializers.DateTimeField(allow_null=True)
    evidence = EvidenceSerializer(allow_null=True)
