"""Input and output shapes of the REST API."""

from __future__ import annotations

from rest_framework import serializers

from .models import Case, Evidence, SigningKey


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    label = serializers.CharField(required=False, allow_blank=True, max_length=100)


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
            "received_at",
            "log_index",
            "receipt",
        ]


class SigningKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SigningKey
        fields = ["keyid", "purpose", "name", "public_key_pem", "valid_from", "valid_until"]


class KeysSerializer(serializers.Serializer):
    log_vkey = serializers.CharField()
    keys = SigningKeySerializer(many=True)
