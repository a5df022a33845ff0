"""REST API for analyses: input serializer -> service -> output serializer."""

from __future__ import annotations

import json
import uuid

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from custody import signing
from custody.api import PublicThrottle, errors
from custody.hashing import is_sha256_hex
from custody.permissions import client_address, get_case_for, get_evidence_for, visible_evidence
from custody.storage import blob_store

from . import publication, services
from .models import Analysis, Artifact


class AnalysisRequestSerializer(serializers.Serializer):
    analyzer = serializers.CharField(max_length=100)
    parameters = serializers.JSONField(required=False, default=dict)


class ArtifactSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob_id")
    size = serializers.IntegerField(source="blob.size")

    class Meta:
        model = Artifact
        fields = ["name", "media_type", "sha256", "size"]


class AnalysisSerializer(serializers.ModelSerializer):
    evidence = serializers.UUIDField(source="evidence.id")
    requested_by = serializers.CharField(source="requested_by.username")
    result = serializers.SerializerMethodField()
    artifacts = ArtifactSerializer(many=True, read_only=True)
    published = serializers.SerializerMethodField()

    class Meta:
        model = Analysis
        fields = [
            "id",
            "evidence",
            "analyzer",
            "analyzer_version",
            "parameters",
            "status",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
            "attempts",
            "error",
            "result",
            "envelope",
            "statement_sha256",
            "artifacts",
            "published",
            "published_at",
            "request_log_index",
            "result_log_index",
            "publish_log_index",
        ]

    def get_result(self, analysis) -> dict | None:
        """The signed statement's predicate, decoded (the envelope is the record)."""
        if not analysis.envelope:
            return None
        return json.loads(signing.b64decode(analysis.envelope["payload"]))["predicate"]

    def get_published(self, analysis) -> bool:
        return analysis.published_at is not None


class AnalyzerSerializer(serializers.Serializer):
    """An installed analyzer, as forensics.services.describe_analyzers states it."""

    name = serializers.CharField()
    version = serializers.CharField()
    accepts = serializers.ListField(child=serializers.CharField(), help_text="media types it reads")
    description = serializers.CharField()
    limits = serializers.ListField(child=serializers.CharField(), help_text="what it cannot tell")
    parameters = serializers.DictField(help_text="its parameters: name -> description")


class PublicResultsSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    results = serializers.ListField(child=serializers.DictField(), help_text="published statements")
    checkpoint = serializers.CharField(allow_null=True, help_text="the cosigned checkpoint note")
    witnesses = serializers.DictField(allow_null=True, help_text="the checkpoint's finality")


def get_analysis_for(user, analysis_id) -> Analysis:
    try:
        pk = uuid.UUID(str(analysis_id))
    except ValueError:
        raise Http404("analysis not found") from None
    analysis = (
        Analysis.objects.select_related("evidence__case", "evidence__blob", "requested_by")
        .filter(pk=pk, evidence__in=visible_evidence(user))
        .first()
    )
    if analysis is None:
        raise Http404("analysis not found")
    return analysis


class AnalyzerListView(APIView):
    @extend_schema(responses=AnalyzerSerializer(many=True))
    def get(self, request):
        return Response(services.describe_analyzers())


class EvidenceAnalysesView(APIView):
    @extend_schema(responses=AnalysisSerializer(many=True))
    def get(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        rows = evidence.analyses.select_related("evidence", "requested_by").prefetch_related(
            "artifacts__blob"
        )
        return Response(AnalysisSerializer(rows, many=True).data)

    @extend_schema(request=AnalysisRequestSerializer, responses={202: AnalysisSerializer})
    def post(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        data = AnalysisRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        analysis = services.request_analysis(
            actor=request.user,
            evidence=evidence,
            analyzer=data.validated_data["analyzer"],
            parameters=data.validated_data["parameters"],
            client=client_address(request),
        )
        return Response(AnalysisSerializer(analysis).data, status=status.HTTP_202_ACCEPTED)


class CaseAnalysesView(APIView):
    """Request one analyzer for every item of a case it accepts."""

    @extend_schema(request=AnalysisRequestSerializer, responses={202: AnalysisSerializer(many=True)})
    def post(self, request, case_id):
        case = get_case_for(request, case_id)
        data = AnalysisRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rows = services.request_case_analysis(
            actor=request.user,
            case=case,
            analyzer=data.validated_data["analyzer"],
            parameters=data.validated_data["parameters"],
            client=client_address(request),
        )
        return Response(AnalysisSerializer(rows, many=True).data, status=status.HTTP_202_ACCEPTED)


class SkippedAnalysisSerializer(serializers.Serializer):
    evidence = serializers.UUIDField(help_text="the item")
    name = serializers.CharField(help_text="the item's original name")
    analyzer = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=sorted(services.SKIP_REASONS),
        help_text="needs_parameter: a parameter with no default (a reference to choose); "
        "already: the same version and parameters already queued, running or succeeded",
    )
    reason = serializers.CharField(help_text="in plain words")
    analysis = serializers.UUIDField(required=False, help_text="the earlier run (kind: already)")


class AllAnalysesSerializer(serializers.Serializer):
    requested = AnalysisSerializer(many=True)
    skipped = SkippedAnalysisSerializer(many=True)


def _all_analyses_response(request, case, evidence=None) -> Response:
    requested, skipped = services.request_all_analyses(
        actor=request.user, case=case, evidence=evidence, client=client_address(request)
    )
    body = {"requested": AnalysisSerializer(requested, many=True).data, "skipped": skipped}
    return Response(body, status=status.HTTP_202_ACCEPTED)


ALL_DESCRIPTION = (
    "Every installed analyzer that reads the item's media type, with its default parameters, in one "
    "transaction (one analysis.requested log entry each). Skipped, and listed with the reason: "
    "analyzers with a parameter that has no default (audio.context's reference recording: request "
    "those one by one) and runs of the same analyzer version with the same parameters that are "
    "already queued, running or succeeded. No request body."
)


class EvidenceAllAnalysesView(APIView):
    """Every applicable analyzer on one item."""

    @extend_schema(request=None, responses={202: AllAnalysesSerializer}, description=ALL_DESCRIPTION)
    def post(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        return _all_analyses_response(request, evidence.case, evidence)


class CaseAllAnalysesView(APIView):
    """Every applicable analyzer on every item of a case."""

    @extend_schema(
        request=None, responses={202: AllAnalysesSerializer, **errors(400)}, description=ALL_DESCRIPTION
    )
    def post(self, request, case_id):
        return _all_analyses_response(request, get_case_for(request, case_id))


class AnalysisDetailView(APIView):
    @extend_schema(responses=AnalysisSerializer)
    def get(self, request, analysis_id):
        return Response(AnalysisSerializer(get_analysis_for(request.user, analysis_id)).data)


class PublishRequestSerializer(serializers.Serializer):
    # Off by default: the public statement then names other items read (the
    # reference recording) by a label only; on, by their SHA-256 too.
    disclose_references = serializers.BooleanField(required=False, default=False)


class AnalysisPublishView(APIView):
    @extend_schema(request=PublishRequestSerializer, responses={200: AnalysisSerializer, **errors(409)})
    def post(self, request, analysis_id):
        analysis = get_analysis_for(request.user, analysis_id)
        data = PublishRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        analysis = services.publish_result(
            actor=request.user,
            analysis=analysis,
            client=client_address(request),
            disclose_references=data.validated_data["disclose_references"],
        )
        return Response(AnalysisSerializer(analysis).data)


def _artifact_response(artifact: Artifact) -> FileResponse:
    response = FileResponse(blob_store().open(artifact.blob_id), content_type=artifact.media_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response


class AnalysisArtifactView(APIView):
    @extend_schema(responses={(200, "*/*"): OpenApiTypes.BINARY})
    def get(self, request, analysis_id, sha256):
        analysis = get_analysis_for(request.user, analysis_id)
        artifact = analysis.artifacts.filter(blob_id=sha256.lower()).first()
        if artifact is None:
            raise Http404("artifact not found")
        return _artifact_response(artifact)


# --- public -------------------------------------------------------------------


class PublicResultsView(APIView):
    """Published results for a file hash: their public statements only (forensics/publication.py).

    Unpublished ones are indistinguishable from absent.
    """

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "sha256",
                str,
                required=True,
                pattern=r"^(sha256:)?[0-9a-fA-F]{64}$",
                description="the file's SHA-256 (hex, optionally prefixed sha256:)",
            )
        ],
        responses=PublicResultsSerializer,
    )
    def get(self, request):
        sha256 = (request.query_params.get("sha256") or "").strip().lower().removeprefix("sha256:")
        if not is_sha256_hex(sha256):
            return Response({"detail": "sha256 must be 64 hexadecimal characters"}, status=400)
        return Response(publication.public_results(sha256))


class PublicArtifactView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(responses={(200, "*/*"): OpenApiTypes.BINARY})
    def get(self, request, sha256):
        artifact = (
            Artifact.objects.filter(blob_id=sha256.lower(), analysis__published_at__isnull=False)
            .select_related("blob")
            .first()
        )
        if artifact is None:
            raise Http404("not found")
        return _artifact_response(artifact)
