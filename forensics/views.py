"""Web UI for analyses: form -> service -> redirect or template; the status JSON the pages poll."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from custody import keys, log, merkle, signing
from custody import services as custody_services
from custody.models import LogEntry, SigningKey
from custody.permissions import (
    Forbidden,
    can_write_case,
    client_address,
    from_another_site,
    get_case_for,
    get_evidence_for,
    visible_evidence,
    writers_only,
)
from custody.services import ServiceError

from . import analyzers, presentation, services
from .api import AnalysisSerializer, _artifact_response, get_analysis_for
from .forms import AnalysisParametersForm
from .models import Analysis


def _parameters(request) -> dict:
    """The older form's JSON text field (still accepted: scripts may post it)."""
    raw = (request.POST.get("parameters") or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(f"parameters are not valid JSON: {exc}") from None
    return value


def _refused_form(request, form, *, evidence=None, case=None):
    """The filled-in form again, its errors next to its fields (nothing typed is lost)."""
    case = case or evidence.case
    action = (
        reverse("evidence-analyse", args=[evidence.pk])
        if evidence
        else reverse("case-analyse", args=[case.pk])
    )
    return render(
        request,
        "forensics/analysis_request.html",
        {"form": form, "module": form.module, "evidence": evidence, "case": case, "action": action},
        status=400,
    )


def _legacy_request(request, evidence=None, case=None):
    try:
        if evidence is not None:
            analysis = services.request_analysis(
                actor=request.user,
                evidence=evidence,
                analyzer=request.POST.get("analyzer", ""),
                parameters=_parameters(request),
                client=client_address(request),
            )
        else:
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
        return _back(evidence, case)
    if evidence is not None:
        messages.success(request, f"{analysis.analyzer} queued.")
        return redirect("analysis-detail", analysis_id=analysis.pk)
    messages.success(request, f"{len(rows)} analyses queued.")
    return redirect("case-detail", case_id=case.pk)


def _back(evidence=None, case=None):
    if evidence is not None:
        return redirect("evidence-detail", evidence_id=evidence.pk)
    return redirect("case-detail", case_id=case.pk)


def _module_or_message(request, name: str, media_types) -> object | None:
    module = analyzers.get(name)
    if module is None:
        messages.error(
            request, f"unknown analyzer {name!r}; available: {', '.join(sorted(analyzers.registry()))}"
        )
        return None
    if not any(analyzers.accepts(module, t) for t in media_types):
        messages.error(request, f"{name} does not read {', '.join(sorted(media_types)) or 'any item here'}")
        return None
    return module


@login_required
@require_POST
@writers_only
def request_for_evidence(request, evidence_id):
    """One analyzer on one item, with the parameters of its form (forensics/forms.py)."""
    evidence = get_evidence_for(request, evidence_id)
    if "parameters" in request.POST:
        return _legacy_request(request, evidence=evidence)
    module = _module_or_message(request, request.POST.get("analyzer", ""), {evidence.media_type})
    if module is None:
        return _back(evidence)
    form = AnalysisParametersForm(module, case=evidence.case, subject=evidence, data=request.POST)
    if form.is_valid():
        try:
            analysis = services.request_analysis(
                actor=request.user,
                evidence=evidence,
                analyzer=module.NAME,
                parameters=form.parameters(),
                client=client_address(request),
            )
        except Forbidden as exc:
            raise PermissionDenied(str(exc)) from None
        except ServiceError as exc:
            form.add_error(None, exc.detail)
        else:
            messages.success(request, f"{analysis.analyzer} queued.")
            return redirect("analysis-detail", analysis_id=analysis.pk)
    return _refused_form(request, form, evidence=evidence)


@login_required
@require_POST
@writers_only
def request_for_case(request, case_id):
    """One analyzer on every item of the case it reads, with the parameters of its form."""
    case = get_case_for(request, case_id)
    if "parameters" in request.POST:
        return _legacy_request(request, case=case)
    media_types = set(case.evidence.values_list("media_type", flat=True))
    module = _module_or_message(request, request.POST.get("analyzer", ""), media_types)
    if module is None:
        return _back(case=case)
    form = AnalysisParametersForm(module, case=case, data=request.POST)
    if form.is_valid():
        try:
            rows = services.request_case_analysis(
                actor=request.user,
                case=case,
                analyzer=module.NAME,
                parameters=form.parameters(),
                client=client_address(request),
            )
        except Forbidden as exc:
            raise PermissionDenied(str(exc)) from None
        except ServiceError as exc:
            form.add_error(None, exc.detail)
        else:
            messages.success(request, f"{module.NAME}: {len(rows)} analyses queued.")
            return redirect("case-detail", case_id=case.pk)
    return _refused_form(request, form, case=case)


def _names(values, limit=5) -> str:
    values = list(values)
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _say_run_all(request, requested, skipped) -> None:
    """One message for what was queued, one per analyzer and kind of reason for what was skipped."""
    if requested:
        by_analyzer: dict[str, list[str]] = {}
        for a in requested:
            by_analyzer.setdefault(a.analyzer, []).append(a.evidence.original_name)
        one_item = len({a.evidence_id for a in requested}) == 1
        parts = [name if one_item else f"{name} ({len(items)} items)" for name, items in by_analyzer.items()]
        messages.success(request, f"{len(requested)} queued: {', '.join(parts)}.")
    else:
        messages.info(request, "Nothing new to run.")
    grouped: dict[tuple[str, str], list[dict]] = {}
    for s in skipped:
        grouped.setdefault((s["analyzer"], s["kind"]), []).append(s)
    for (analyzer, _), rows in grouped.items():
        reason = rows[0]["reason"] if len(rows) == 1 else services.SKIP_REASONS[rows[0]["kind"]]
        messages.warning(request, f"Skipped {analyzer} on {_names(r['name'] for r in rows)}: {reason}.")


@login_required
@require_POST
@writers_only
def request_all_for_evidence(request, evidence_id):
    """Every applicable analyzer on the item, with default parameters."""
    evidence = get_evidence_for(request, evidence_id)
    try:
        requested, skipped = services.request_all_analyses(
            actor=request.user, case=evidence.case, evidence=evidence, client=client_address(request)
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        _say_run_all(request, requested, skipped)
    return redirect("evidence-detail", evidence_id=evidence.pk)


@login_required
@require_POST
@writers_only
def request_all_for_case(request, case_id):
    """Every applicable analyzer on every item of the case, with default parameters."""
    case = get_case_for(request, case_id)
    try:
        requested, skipped = services.request_all_analyses(
            actor=request.user, case=case, client=client_address(request)
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        _say_run_all(request, requested, skipped)
    return redirect("case-detail", case_id=case.pk)


# --- live status (static/custody/progress.js polls these) ---------------------

PENDING = (Analysis.Status.QUEUED, Analysis.Status.RUNNING)
CASE_STATUS_LIMIT = 100


def _status_row(a: Analysis, now) -> dict:
    row = {
        "id": str(a.pk),
        "evidence": str(a.evidence_id),
        "analyzer": a.analyzer,
        "version": a.analyzer_version,
        "status": a.status,
        "attempts": a.attempts,
        "url": reverse("analysis-detail", args=[a.pk]),
        "requested_at": a.requested_at.isoformat(),
        "started_at": a.started_at.isoformat() if a.started_at else None,
        "finished_at": a.finished_at.isoformat() if a.finished_at else None,
        # Seconds so far (running) or taken (finished): analyzers report no
        # fraction done, so this is what "how far along" can honestly say.
        "elapsed_s": None,
        "error": a.error or None,
    }
    if a.started_at:
        row["elapsed_s"] = round(((a.finished_at or now) - a.started_at).total_seconds(), 1)
    return row


def case_analyses(case, limit: int = CASE_STATUS_LIMIT) -> list[Analysis]:
    """The case's analyses as its page lists them: every queued or running one, then the latest others."""
    return _pending_then_latest(Analysis.objects.filter(evidence__case=case), limit)


def _pending_then_latest(rows, limit: int) -> list[Analysis]:
    rows = rows.select_related("evidence", "requested_by")
    pending = list(rows.filter(status__in=PENDING).order_by("-requested_at"))
    rest = list(rows.exclude(status__in=PENDING).order_by("-requested_at")[: max(0, limit - len(pending))])
    return sorted(pending + rest, key=lambda a: a.requested_at, reverse=True)


def _status_response(rows) -> JsonResponse:
    now = timezone.now()
    rows = list(rows)
    counts = {s: 0 for s in Analysis.Status.values}
    for a in rows:
        counts[a.status] += 1
    response = JsonResponse(
        {
            "pending": counts["queued"] + counts["running"],
            "counts": counts,
            "analyses": [_status_row(a, now) for a in rows],
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
def evidence_status(request, evidence_id):
    """The item's analyses and where each stands, as JSON; no log entry (it is a list, like the API's)."""
    evidence = get_evidence_for(request, evidence_id)
    return _status_response(evidence.analyses.order_by("requested_at"))


@login_required
def case_status(request, case_id):
    case = get_case_for(request, case_id)
    return _status_response(case_analyses(case))


@login_required
def home_status(request):
    """The home page's running analyses (every queued or running one in the user's cases), then the latest others."""
    return _status_response(
        _pending_then_latest(
            Analysis.objects.filter(evidence__in=visible_evidence(request.user)), CASE_STATUS_LIMIT
        )
    )


@login_required
def analysis_status(request, analysis_id):
    return _status_response([get_analysis_for(request.user, analysis_id)])


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


@login_required
def examination_report(request, evidence_id):
    """The per-item examination report: identity, every completed analysis in plain words with its
    figures, limits and signature, and the item's log entries with inclusion proofs. Printable.

    Opening it is a view of the evidence, logged like the evidence page (evidence.viewed).
    """
    if from_another_site(request):
        # As on the evidence page: a link on another site must not write a log entry in the user's name.
        return render(request, "custody/confirm_open.html", {"url": request.path})
    evidence = get_evidence_for(request, evidence_id)
    custody_services.record_view(actor=request.user, evidence=evidence, client=client_address(request))
    # After the view is logged, so the checkpoint covers this very entry too.
    checkpoint = log.latest_checkpoint()
    root = bytes(checkpoint.root)

    results_keys = keys.public_keys("results")
    key_rows = {k.keyid: k for k in SigningKey.objects.filter(purpose=SigningKey.Purpose.RESULTS)}
    sections = []
    others = []
    for analysis in evidence.analyses.select_related("requested_by").prefetch_related("artifacts__blob"):
        if analysis.status != Analysis.Status.SUCCEEDED or not analysis.envelope:
            others.append(analysis)
            continue
        result = presentation.result_of(analysis)
        signature = analysis.envelope["signatures"][0]
        try:
            _, keyid = signing.dsse_verify(analysis.envelope, results_keys)
            verified = True
        except (ValueError, KeyError):
            keyid, verified = signature.get("keyid", ""), False
        overlays = presentation.overlay_digests(result)
        sections.append(
            {
                "analysis": analysis,
                "result": result,
                "summary": presentation.summary([(analysis, result)]),
                "artifacts": [
                    {"name": a.name, "media_type": a.media_type, "sha256": a.blob_id, "size": a.blob.size}
                    for a in analysis.artifacts.all()
                ],
                "figures": [
                    a
                    for a in analysis.artifacts.all()
                    if a.media_type.startswith("image/") and a.blob_id not in overlays
                ],
                "signature": {
                    "keyid": signature.get("keyid", ""),
                    "sig": signature.get("sig", ""),
                    "payload_type": analysis.envelope.get("payloadType", ""),
                    "verified": verified,
                    "key": key_rows.get(keyid),
                },
            }
        )
    proofs = []
    for entry in LogEntry.objects.filter(evidence=evidence, index__lt=checkpoint.size).order_by("index"):
        leaf_hash = bytes(entry.leaf_hash)
        path = log.inclusion_proof(entry.index, checkpoint.size)
        proofs.append(
            {
                "entry": entry,
                "decoded": entry.decoded,
                "leaf_hash": leaf_hash.hex(),
                "proof": [h.hex() for h in path],
                # Checked here against the checkpoint's root; the report prints the
                # hashes so anyone can redo it (README, "The custody log").
                "ok": merkle.verify_inclusion(leaf_hash, entry.index, checkpoint.size, path, root),
            }
        )
    used = {s["signature"]["key"].keyid: s["signature"]["key"] for s in sections if s["signature"]["key"]}
    return render(
        request,
        "forensics/examination.html",
        {
            "result_keys": list(used.values()),
            "evidence": evidence,
            "sections": sections,
            "others": others,
            "summary": presentation.summary((s["analysis"], s["result"]) for s in sections),
            "checkpoint": checkpoint,
            "root_hex": root.hex(),
            "proofs": proofs,
        },
    )
