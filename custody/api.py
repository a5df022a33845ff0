"""REST API views: input serializer -> service -> output serializer."""

from __future__ import annotations

import base64
import uuid

from django.conf import settings
from django.contrib.auth import authenticate
from django.db.models import Q
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from . import keys, log, permissions, second_factor, services, signing, trustroot, uploads, witnessing
from .auth import HashedTokenAuthentication
from .limits import UploadRefused
from .login_limits import LOCKED_MESSAGE, AuthThrottle, PublicThrottle
from .models import ApiToken, LogEntry, SigningKey, Transfer, TrustRoot, User
from .permissions import (
    Forbidden,
    client_address,
    get_case_for,
    get_evidence_for,
    visible_cases,
    visible_evidence,
)
from .serializers import (
    CaseInputSerializer,
    CaseSerializer,
    ConsistencyProofSerializer,
    DownloadRequestSerializer,
    DsseEnvelopeSerializer,
    ErrorSerializer,
    EvidenceInputSerializer,
    EvidenceSerializer,
    ExportRequestSerializer,
    InclusionProofSerializer,
    KeysSerializer,
    LogEntryItemSerializer,
    PaginatedEvidenceSerializer,
    SigningKeySerializer,
    TimestampsSerializer,
    TokenRequestSerializer,
    TokenSerializer,
    TransferDecisionSerializer,
    TransferInputSerializer,
    TransferSerializer,
    TrustRootChainSerializer,
)
from .storage import BlobStoreUnavailable

# --- the schema is the contract ----------------------------------------------
#
# Every answer an operation can give is in the OpenAPI schema: the success
# body and the errors (JSON ``{"detail": ...}``, see exception_handler). The
# errors common to a kind of view are added here, from what the view is (its
# authentication, permissions, throttles, parameters); those particular to an
# operation are named on it with errors(...). tests/test_schema_contract.py
# and scripts/contract (schemathesis on a live server) hold the server to it.

ERROR_MEANINGS = {
    400: "malformed or refused input",
    401: "no credentials, or a wrong, revoked or inactive user's token",
    403: "not allowed (an auditor's write, a case you may not change, a logged read by session GET)",
    404: "not found, or not visible to you (the same answer)",
    409: "conflicts with the current state",
    410: "expired or gone",
    411: "Content-Length required",
    412: "Tus-Resumable missing or not 1.0.0",
    413: "over a size limit, a quota or the disk's reserve; nothing is kept",
    415: "unsupported Content-Type",
    422: "the declared SHA-256 does not match the bytes received; nothing is kept",
    423: "another request is writing to this upload",
    429: "too many requests (throttled or locked out)",
    460: "Upload-Checksum does not match (tus checksum extension)",
    503: "the bytes could not be stored (not a full disk); resume later",
    507: "the disk is full; resume later",
}


def errors(*codes: int) -> dict:
    """Error responses for extend_schema(responses=...): each a JSON ``{"detail": ...}``."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[code]) for code in codes}


class ContractSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the error answers every view of a kind can give."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        view = self.view
        codes = set()
        if getattr(view, "authentication_classes", None):
            codes.add(401)  # a wrong or revoked token is refused on any view that reads one
        if any(issubclass(p, IsAuthenticated) for p in getattr(view, "permission_classes", ())):
            codes.update({401, 403})
        if "{" in self.path:
            codes.add(404)
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        if has_body:
            codes.update({400, 415})
        if any(
            isinstance(p, OpenApiParameter) and p.location == OpenApiParameter.QUERY and not p.response
            for p in self.get_override_parameters()
        ):
            codes.add(400)
        if getattr(view, "throttle_classes", None):
            codes.add(429)
        for code in sorted(codes):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[code]), str(code)
                )
        if self.method == "HEAD":  # the same answers, without a body
            for response in responses.values():
                response.pop("content", None)
        return dict(sorted(responses.items()))


class ContractEndpoints(EndpointEnumerator):
    """drf-spectacular's endpoints, plus HEAD where a view answers it itself (tus), not as GET."""

    def get_allowed_methods(self, callback):
        methods = super().get_allowed_methods(callback)
        cls = getattr(callback, "cls", None)
        if cls is not None and "head" in vars(cls):
            methods.append("HEAD")
        return methods


class ContractSchemaGenerator(SchemaGenerator):
    endpoint_inspector_cls = ContractEndpoints


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def exception_handler(exc, context):
    """Every error is JSON ``{"detail": ...}`` with the right 4xx."""
    if isinstance(exc, BlobStoreUnavailable):
        exc = services.store_unavailable(exc, "nothing was done")
    if isinstance(exc, (services.ServiceError, UploadRefused)):
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return Response({"detail": exc.detail}, status=exc.status, headers=headers)
    if isinstance(exc, Forbidden):
        return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        errors = response.data
        response.data = {"detail": _first_message(errors), "errors": errors}
    return response


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def find_case(user, value: str):
    """A visible case by id or by reference; 404 otherwise."""
    value = (value or "").strip()
    query = Q(reference=value)
    try:
        query |= Q(pk=uuid.UUID(value))
    except ValueError:
        pass
    found = list(visible_cases(user).filter(query)[:2])
    if not found:
        raise Http404("case not found")
    if len(found) > 1:
        # References are unique per user, but an administrator sees every
        # investigator's cases: two may share one.
        raise services.ServiceError(
            f"several cases you can see have the reference {value!r}: give the case id", status=409
        )
    return found[0]


class TokenView(APIView):
    authentication_classes = [HashedTokenAuthentication]
    permission_classes = [AllowAny]
    throttle_classes = [AuthThrottle]
    throttle_scope = "auth"

    @extend_schema(request=TokenRequestSerializer, responses={201: TokenSerializer})
    def post(self, request):
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The Django request, not DRF's wrapper: django-axes counts the
        # failure and flags a lockout on it, where its middleware looks.
        user = authenticate(
            request._request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if getattr(request._request, "axes_locked_out", False):
            return Response(
                {"detail": LOCKED_MESSAGE.format(minutes=settings.CUSTODY_LOGIN_COOLOFF_MINUTES)},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
            )
        if user is None or not user.is_active:
            return Response({"detail": "wrong username or password"}, status=status.HTTP_401_UNAUTHORIZED)
        if second_factor.is_enrolled(user):
            # A password alone must not buy a token where it cannot buy a web session.
            if not data.validated_data.get("otp"):
                return Response(
                    {
                        "detail": "this account has a second factor: send its current code (or a recovery code) as otp"
                    },
                    status=status.HTTP_401_UNAUTHORIZED,
                )
            try:
                second_factor.verify(
                    user=user,
                    code=data.validated_data["otp"],
                    client=client_address(request),
                    purpose="api_token",
                )
            except second_factor.SecondFactorError as exc:
                return Response({"detail": exc.detail}, status=429 if exc.status == 429 else 401)
        row, token = services.issue_token(
            user=user, label=data.validated_data.get("label", ""), client=client_address(request)
        )
        return Response({"token": token, "prefix": row.prefix}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None, **errors(400)})
    def delete(self, request):
        """Revoke the token used to authenticate this request."""
        if not isinstance(request.auth, ApiToken):
            return Response({"detail": "authenticate with the token to revoke"}, status=400)
        services.revoke_token(actor=request.user, token=request.auth, client=client_address(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CaseListView(APIView):
    @extend_schema(responses=CaseSerializer(many=True))
    def get(self, request):
        cases = visible_cases(request.user).select_related("created_by").order_by("reference")
        return Response(CaseSerializer(cases, many=True).data)

    @extend_schema(request=CaseInputSerializer, responses={201: CaseSerializer, **errors(409)})
    def post(self, request):
        data = CaseInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = services.create_case(actor=request.user, client=client_address(request), **data.validated_data)
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseDetailView(APIView):
    @extend_schema(responses=CaseSerializer)
    def get(self, request, case_id):
        return Response(CaseSerializer(get_case_for(request, case_id)).data)


class EvidenceListView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="v1_evidence_list",
        parameters=[
            OpenApiParameter("case", str, description="case id or reference"),
            OpenApiParameter("sha256", str, description="only items with these bytes"),
            OpenApiParameter("limit", int, description=f"items per page (at most {Pagination.max_limit})"),
            OpenApiParameter("offset", int, description="items to skip"),
        ],
        responses={200: PaginatedEvidenceSerializer, **errors(404, 409)},
    )
    def get(self, request):
        items = visible_evidence(request.user).select_related("case", "blob", "submitted_by", "custodian")
        if case := request.query_params.get("case"):
            items = items.filter(case=find_case(request.user, case))
        if sha256 := request.query_params.get("sha256"):
            items = items.filter(blob_id=sha256.lower())
        paginator = Pagination()
        page = paginator.paginate_queryset(items.order_by("received_at"), request, view=self)
        return paginator.get_paginated_response(EvidenceSerializer(page, many=True).data)

    @extend_schema(
        request=EvidenceInputSerializer,
        responses={201: EvidenceSerializer, **errors(404, 409, 411, 413, 422, 503, 507)},
    )
    def post(self, request):
        # Refuse read-only users before the body is parsed: parsing receives the whole upload.
        if not request.user.can_write:
            raise Forbidden("auditors have read-only access")
        if not request.META.get("CONTENT_LENGTH") and "chunked" in request.META.get(
            "HTTP_TRANSFER_ENCODING", ""
        ):
            # WSGI hands Django no body for a chunked request without a length.
            return Response(
                {
                    "detail": "send the upload with a Content-Length header (chunked transfer encoding is not supported)"
                },
                status=status.HTTP_411_LENGTH_REQUIRED,
            )
        data = EvidenceInputSerializer(data=request.data)
        if refused := uploads.refusal(request):
            raise refused
        if "file" not in request.FILES:
            raise exceptions.ValidationError(
                {"file": ["no file received: send the evidence as a multipart part named 'file'"]}
            )
        data.is_valid(raise_exception=True)
        case = find_case(request.user, data.validated_data["case"])
        evidence = services.receive_evidence(
            actor=request.user,
            case=case,
            upload=data.validated_data["file"],
            description=data.validated_data["description"],
            source=data.validated_data["source"],
            declared_sha256=data.validated_data["sha256"] or None,
            client=client_address(request),
        )
        return Response(EvidenceSerializer(evidence).data, status=status.HTTP_201_CREATED)


# --- reads that are logged ------------------------------------------------------
#
# Viewing, downloading and exporting an item each write a log entry. A browser
# sends its session cookie with the GET of a link on another site's page (a
# SameSite=Lax cookie goes with top-level navigations), so a GET with only a
# session would let that site write entries in the user's name (a download
# with its own "reason"). These reads
# take GET with an API token, or POST: DRF checks the CSRF token of a POST
# made with a session. POST here reads, so auditors may use it.

SESSION_GET_REFUSED = (
    "this read is recorded in the custody log: authenticate with an API token "
    "(Authorization: Token ...), or from a browser session send it as a POST with the CSRF token"
)


def refuse_session_get(request) -> None:
    """Before anything is looked up (a refusal would be logged too): a logged GET needs a token."""
    if request.method in ("GET", "HEAD") and not isinstance(request.auth, ApiToken):
        raise Forbidden(SESSION_GET_REFUSED)


class LoggedReadView(APIView):
    permission_classes = [IsAuthenticated]  # not ReadOnlyForAuditors: POST reads here

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        refuse_session_get(request)


class EvidenceDetailView(LoggedReadView):
    @extend_schema(responses=EvidenceSerializer)
    def get(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        services.record_view(actor=request.user, evidence=evidence, client=client_address(request))
        return Response(EvidenceSerializer(evidence).data)

    @extend_schema(
        operation_id="v1_evidence_view",
        request=None,
        responses=EvidenceSerializer,
        description="The same as GET, for a browser session (with the CSRF token).",
    )
    def post(self, request, evidence_id):
        return self.get(request, evidence_id)


def evidence_file_response(user, evidence, reason: str, client: str | None) -> FileResponse:
    """Stream the evidence bytes (never read whole), with RFC 9530 Repr-Digest."""
    handle = services.open_for_download(actor=user, evidence=evidence, reason=reason, client=client)
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=evidence.original_name,
        content_type="application/octet-stream",
    )
    if not response.has_header("Content-Length"):  # a stream from the object store
        response["Content-Length"] = str(evidence.blob.size)
    digest = base64.b64encode(bytes.fromhex(evidence.blob_id)).decode()
    response["Repr-Digest"] = f"sha-256=:{digest}:"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


REPR_DIGEST = OpenApiParameter(
    "Repr-Digest",
    str,
    location=OpenApiParameter.HEADER,
    required=True,
    response=[200],
    description="RFC 9530: sha-256=:<base64 of the SHA-256 of the bytes>:",
)


class EvidenceContentView(LoggedReadView):
    @extend_schema(
        parameters=[
            OpenApiParameter("reason", str, description="why the bytes are needed (logged)"),
            REPR_DIGEST,
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        return evidence_file_response(
            request.user, evidence, request.query_params.get("reason", ""), client_address(request)
        )

    @extend_schema(
        request=DownloadRequestSerializer,
        parameters=[REPR_DIGEST],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        description="The same as GET, for a browser session (with the CSRF token); the reason in the body.",
    )
    def post(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        data = DownloadRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return evidence_file_response(
            request.user, evidence, data.validated_data["reason"], client_address(request)
        )


class EvidenceReceiptView(APIView):
    @extend_schema(responses=DsseEnvelopeSerializer)
    def get(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        return Response(evidence.receipt)


class KeysView(APIView):
    """Public keys, to check receipts, results and checkpoints (no authentication)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(responses=KeysSerializer)
    def get(self, request):
        rows = SigningKey.objects.all()
        return Response(
            {
                "log_vkey": keys.log_verifier_key(),
                "keys": SigningKeySerializer(rows, many=True).data,
            }
        )


class TrustRootView(APIView):
    """The trust root (a DSSE envelope) to pin out of band; ``?version=N`` for an earlier one.

    ``GET /api/v1/trust-root/chain/`` lists every version, oldest first, so a
    client pinned to an old version can follow the chain forward.
    """

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(
        parameters=[
            OpenApiParameter("version", int, required=False),
            OpenApiParameter(
                "Custody-Trust-Root-Fingerprint",
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                response=[200],
                description="SHA-256 fingerprint of the trust root, to compare with the pinned one",
            ),
        ],
        responses={200: DsseEnvelopeSerializer, **errors(404)},
    )
    def get(self, request):
        rows = TrustRoot.objects.order_by("-version")
        if request.query_params.get("version"):
            rows = rows.filter(version=_int_param(request, "version"))
        row = rows.first()
        if row is None:
            raise Http404("no trust root has been published")
        response = Response(row.envelope)
        response["Custody-Trust-Root-Fingerprint"] = trustroot.fingerprint(row.envelope)
        return response


class TrustRootChainView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(responses=TrustRootChainSerializer)
    def get(self, request):
        return Response({"versions": [row.envelope for row in TrustRoot.objects.order_by("version")]})


# --- the custody log ---------------------------------------------------------

MAX_ENTRIES_PAGE = 1000
COUNT = {"type": "integer", "minimum": 0}  # a log index or size (a negative one is a 400)


def _int_param(request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise exceptions.ValidationError({name: ["this parameter is required"]})
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: ["must be an integer"]}) from None
    if value < 0:
        raise exceptions.ValidationError({name: ["must not be negative"]})
    return value


class CheckpointView(APIView):
    """The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "final",
                bool,
                description="1: the newest checkpoint cosigned by a quorum of witnesses (404 if none yet)",
            )
        ],
        responses={(200, "text/plain"): OpenApiTypes.STR, **errors(404)},
    )
    def get(self, request):
        """The newest checkpoint, with the witnesses' cosignature lines appended (C2SP signed note)."""
        from django.http import HttpResponse

        if request.query_params.get("final") in ("1", "true"):
            checkpoint = witnessing.latest_final_checkpoint()
            if checkpoint is None:
                raise Http404("no checkpoint has been cosigned by a quorum of witnesses yet")
        else:
            checkpoint = log.latest_checkpoint()
        response = HttpResponse(
            witnessing.cosigned_note(checkpoint), content_type="text/plain; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        return response


class WitnessesView(APIView):
    """Each witness's status and whether the current checkpoint is final (cosigned by the quorum)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        response = Response(witnessing.status_report())
        response["Cache-Control"] = "no-cache"
        return response


class LogEntriesView(APIView):
    """Entries [start, end): the exact leaf bytes (base64) and the decoded entry.

    Entries about a case you cannot see, account and token entries (unless you
    are an administrator) and your own refused requests are redacted to their
    leaf hash, which is all that is needed to recompute the tree and check an
    entry's inclusion (permissions.entry_visible_to).
    """

    @extend_schema(
        parameters=[
            OpenApiParameter("start", COUNT),
            OpenApiParameter("end", COUNT, description="exclusive"),
        ],
        responses=LogEntryItemSerializer(many=True),
    )
    def get(self, request):
        size, _ = log.tree_head()
        start = _int_param(request, "start", 0)
        end = min(_int_param(request, "end", min(size, start + 100)), size, start + MAX_ENTRIES_PAGE)
        if start > end:
            raise services.ServiceError(f"start must be <= end (log size is {size})")
        rows = LogEntry.objects.filter(index__gte=start, index__lt=end).order_by("index")
        visible = permissions.visible_case_ids(request.user)
        out = []
        for row in rows:
            if permissions.entry_visible_to(request.user, row, visible):
                out.append({"index": row.index, "leaf": signing.b64(bytes(row.leaf)), "entry": row.decoded})
            else:
                out.append(
                    {"index": row.index, "redacted": True, "leaf_hash": signing.b64(bytes(row.leaf_hash))}
                )
        return Response(out)


class InclusionProofView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(
        parameters=[OpenApiParameter("index", COUNT, required=True), OpenApiParameter("size", COUNT)],
        responses=InclusionProofSerializer,
    )
    def get(self, request):
        size_now, _ = log.tree_head()
        index = _int_param(request, "index")
        size = _int_param(request, "size", size_now)
        if not 0 <= index < size <= size_now:
            raise services.ServiceError(f"need 0 <= index < size <= {size_now} (the log's size)")
        hashes = log.inclusion_proof(index, size)
        return Response({"index": index, "size": size, "hashes": [signing.b64(h) for h in hashes]})


class ConsistencyProofView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(
        parameters=[
            OpenApiParameter("first", {"type": "integer", "minimum": 1}, required=True),
            OpenApiParameter("second", {"type": "integer", "minimum": 1}),
        ],
        responses=ConsistencyProofSerializer,
    )
    def get(self, request):
        size_now, _ = log.tree_head()
        first = _int_param(request, "first")
        second = _int_param(request, "second", size_now)
        if not 0 < first <= second <= size_now:
            raise services.ServiceError(f"need 0 < first <= second <= {size_now} (the log's size)")
        hashes = log.consistency_proof(first, second)
        return Response({"first": first, "second": second, "hashes": [signing.b64(h) for h in hashes]})


class TimestampsView(APIView):
    """RFC 3161 tokens over a checkpoint's signed text (custody/timestamps.py); public like the checkpoint.

    ``size`` defaults to the newest checkpoint. ``stamped`` is the SHA-256 of
    the bytes each token covers: the note's text up to the blank line.
    """

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [PublicThrottle]

    @extend_schema(
        parameters=[OpenApiParameter("size", COUNT)], responses={200: TimestampsSerializer, **errors(404)}
    )
    def get(self, request):
        from . import timestamps
        from .models import Checkpoint

        if request.query_params.get("size") in (None, ""):
            checkpoint = Checkpoint.objects.order_by("-size").first()
        else:
            checkpoint = Checkpoint.objects.filter(size=_int_param(request, "size")).first()
        if checkpoint is None:
            raise exceptions.NotFound("no signed checkpoint of that size")
        return Response(
            {
                "size": checkpoint.size,
                "checkpoint": checkpoint.note,
                "stamped": timestamps.message_digest(timestamps.checkpoint_body(checkpoint.note)),
                "timestamps": timestamps.tokens_for(checkpoint.size),
            }
        )


# --- custody transfers -------------------------------------------------------


class EvidenceTransfersView(APIView):
    @extend_schema(responses=TransferSerializer(many=True))
    def get(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        transfers = evidence.transfers.select_related("from_user", "to_user", "evidence")
        return Response(TransferSerializer(transfers, many=True).data)

    @extend_schema(request=TransferInputSerializer, responses={201: TransferSerializer, **errors(409)})
    def post(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        data = TransferInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # An unknown name goes to the service as it is: it is refused there, at
        # the same step and in the same words as a user who cannot take custody,
        # so the answer does not tell which user names exist.
        username = data.validated_data["to_user"]
        to_user = User.objects.filter(username=username).first()
        transfer = services.release_custody(
            actor=request.user,
            evidence=evidence,
            to_user=to_user or username,
            purpose=data.validated_data["purpose"],
            location=data.validated_data["location"],
            client=client_address(request),
        )
        return Response(TransferSerializer(transfer).data, status=status.HTTP_201_CREATED)


class TransferListView(APIView):
    """Handovers you are part of; ?status=pending for those waiting on someone."""

    @extend_schema(parameters=[OpenApiParameter("status", str)], responses=TransferSerializer(many=True))
    def get(self, request):
        transfers = Transfer.objects.filter(
            Q(to_user=request.user) | Q(from_user=request.user), evidence__in=visible_evidence(request.user)
        ).select_related("from_user", "to_user", "evidence")
        if wanted := request.query_params.get("status"):
            transfers = transfers.filter(status=wanted)
        return Response(TransferSerializer(transfers, many=True).data)


def get_transfer_for(user, transfer_id) -> Transfer:
    try:
        return Transfer.objects.select_related(
            "evidence__case", "evidence__blob", "from_user", "to_user"
        ).get(pk=uuid.UUID(str(transfer_id)), evidence__in=visible_evidence(user))
    except (ValueError, Transfer.DoesNotExist):
        raise Http404("transfer not found") from None


class TransferDecisionView(APIView):
    accept = True

    @extend_schema(request=TransferDecisionSerializer, responses={200: TransferSerializer, **errors(409)})
    def post(self, request, transfer_id):
        transfer = get_transfer_for(request.user, transfer_id)
        data = TransferDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        transfer = services.decide_transfer(
            actor=request.user,
            transfer=transfer,
            accept=self.accept,
            note=data.validated_data["note"],
            client=client_address(request),
        )
        return Response(TransferSerializer(transfer).data)


class EvidenceExportView(LoggedReadView):
    """A BagIt export bundle (zip) of the item, checkable offline (logged: evidence.exported)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("include_file", bool, description="put the evidence file in the bundle")
        ],
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
    )
    def get(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        include = request.query_params.get("include_file", "").lower() in TRUE_WORDS
        return export_response(request.user, evidence, include, client_address(request))

    @extend_schema(
        request=ExportRequestSerializer,
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
        description="The same as GET, for a browser session (with the CSRF token).",
    )
    def post(self, request, evidence_id):
        evidence = get_evidence_for(request, evidence_id)
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        include = data.validated_data["include_file"]
        return export_response(request.user, evidence, include, client_address(request))


TRUE_WORDS = {"1", "true", "yes", "on"}


def export_response(user, evidence, include_file: bool, client: str | None) -> StreamingHttpResponse:
    from .export import build_bundle

    chunks, name = build_bundle(actor=user, evidence=evidence, include_file=include_file, client=client)
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["Cache-Control"] = "private, no-store"
    return response
