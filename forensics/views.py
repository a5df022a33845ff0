"""Web UI for analyses: form -> service -> redirect or template."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from custody.permissions import (
    Forbidden,
    can_write_case,
    client_address,
    get_case_for,
    get_evidence_for,
    writers_only,
)
from custody.services import ServiceError

from . import services
from .api import AnalysisSerializer, _artifact_response, get_analysis_for


def _parameters(request) -> dict:
    raw = (request.POST.get("parameters") or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(f"parameters are not valid JSON: {exc}") from None
    return value


@login_required
@require_POST
@writers_only
def request_for_evidence(request, evidence_id):
    evidence = get_evidence_for(request, evidence_id)
    try:
        analysis = services.request_analysis(
            actor=request.user,
            evidence=evidence,
            analyzer=request.POST.get("analyzer", ""),
            parameters=_parameters(request),
            client=client_address(request),
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("evidence-detail", evidence_id=evidence.pk)
    messages.success(request, f"{analysis.analyzer} queued.")
    return redirect("analysis-detail", analysis_id=analysis.pk)


@login_required
@require_POST
@writers_only
def request_for_case(request, case_id):
    case = get_case_for(request, case_id)
    try:
        rows = services.request_case_analysis(
            actor=request.user,
            case=case,
            analyzer=request.POST.get("analyzer", ""),
            parameters=_parameters(request),
            client=client_address(request),
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{len(rows)} analyses queued.")
    return redirect("case-detail", case_id=case.pk)


@login_required
def analysis_detail(request, analysis_id):
    analysis = get_analysis_for(request.user, analysis_id)
    data = AnalysisSerializer(analysis).data
    return render(
        request,
        "forensics/analysis_detail.html",
        {
            "analysis": analysis,
            "data": data,
            "result": data["result"],
            "can_publish": can_write_case(request.user, analysis.evidence.case),
            "running": analysis.status in ("queued", "running"),
        },
    )


@login_required
def analysis_envelope(request, analysis_id):
    analysis = get_analysis_for(request.user, analysis_id)
    if not analysis.envelope:
        raise Http404("no result yet")
    response = JsonResponse(analysis.envelope, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="result-{analysis.pk}.dsse.json"'
    return response


@login_required
def analysis_artifact(request, analysis_id, sha256):
    analysis = get_analysis_for(request.user, analysis_id)
    artifact = analysis.artifacts.filter(blob_id=sha256.lower()).first()
    if artifact is None:
        raise Http404("artifact not found")
    return _artifact_response(artifact)


@login_required
@require_POST
@writers_only
def publish(request, analysis_id):
    analysis = get_analysis_for(request.user, analysis_id)
    try:
        services.publish_result(
            actor=request.user,
            analysis=analysis,
            client=client_address(request),
            disclose_references=request.POST.get("disclose_references") in {"1", "on", "true"},
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request, "Published: anyone holding the file (or its SHA-256) can now check this result."
        )
    return redirect("analysis-detail", analysis_id=analysis.pk)
