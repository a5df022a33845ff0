"""Web UI views: form -> service -> redirect or template."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from forensics import analyzers as analyzer_registry

from . import services, uploads
from .api import evidence_file_response
from .forms import (
    AddMemberForm,
    CaseFilterForm,
    CaseForm,
    DownloadForm,
    EvidenceUploadForm,
    TransferDecisionForm,
    TransferForm,
)
from .models import Checkpoint, LogEntry, Transfer
from .permissions import (
    Forbidden,
    can_write_case,
    client_address,
    from_another_site,
    get_case_for,
    get_evidence_for,
    visible_cases,
    visible_evidence,
    writers_only,
)


@login_required
def case_list(request):
    """The home page: what waits for the user, then the cases they can see (``?q=`` filters them).

    Only lists, like the search page: nothing here writes a log entry, and
    every query starts from the cases the user can see.
    """
    from forensics.models import Analysis

    user = request.user
    q = (request.GET.get("q") or "").strip()[:200]
    cases = visible_cases(user).select_related("created_by").order_by("reference")
    if q:
        cases = cases.filter(Q(reference__icontains=q) | Q(title__icontains=q))
    filters = CaseFilterForm(request.GET)
    filters.is_valid()  # a field with a bad value is reported on the page and not applied
    cases = filter_cases(cases, user, filters.cleaned_data)
    items = visible_evidence(user)
    waiting = (
        Transfer.objects.filter(to_user=user, status=Transfer.Status.PENDING, evidence__in=items)
        .select_related("evidence__case", "from_user")
        .order_by("released_at")
    )
    recent = items.filter(submitted_by=user).select_related("case").order_by("-received_at")[:10]
    running = (
        Analysis.objects.filter(
            status__in=[Analysis.Status.QUEUED, Analysis.Status.RUNNING], evidence__in=items
        )
        .select_related("evidence__case")
        .order_by("-requested_at")[:10]
    )
    return render(
        request,
        "custody/case_list.html",
        {
            "cases": cases,
            "q": q,
            "filters": filters,
            "filtered": bool(q) or any(request.GET.get(name) for name in filters.fields),
            "waiting": waiting,
            "recent": recent,
            "running": running,
        },
    )


def filter_cases(cases, user, f: dict):
    """Narrow ``cases`` (already only those ``user`` can see) by the case list's filters."""
    from forensics.models import Analysis

    if f.get("mine") == "member":
        cases = cases.filter(membership__user=user)
    elif f.get("mine") == "created":
        cases = cases.filter(created_by=user)
    if f.get("media"):
        cases = cases.filter(evidence__media_type__istartswith=f["media"])
    if f.get("handover"):
        cases = cases.filter(evidence__transfers__status=Transfer.Status.PENDING)
    if f.get("analyses") == "pending":
        cases = cases.filter(evidence__analyses__status__in=[Analysis.Status.QUEUED, Analysis.Status.RUNNING])
    elif f.get("analyses") == "failed":
        cases = cases.filter(evidence__analyses__status=Analysis.Status.FAILED)
    if f.get("since"):
        cases = cases.filter(created_at__date__gte=f["since"])
    if f.get("until"):
        cases = cases.filter(created_at__date__lte=f["until"])
    return cases.distinct()


SEARCH_LIMIT = 100
_HEX = frozenset("0123456789abcdef")


def search_filter(q: str) -> Q | None:
    """Items whose original name contains ``q``, whose SHA-256 starts with it (6+ hex digits), or
    whose media type starts with it (when it has a "/", e.g. ``audio/``); all case-insensitive."""
    q = q.strip()
    if not q:
        return None
    found = Q(original_name__icontains=q)
    digest = q.lower().removeprefix("sha256:")
    if 6 <= len(digest) <= 64 and set(digest) <= _HEX:
        found |= Q(blob__sha256__startswith=digest)
    if "/" in q:
        found |= Q(media_type__istartswith=q)
    return found


@login_required
def search(request):
    """Evidence in the cases the user can see, by name, SHA-256 (prefix) or media type.

    A list, like the case list: no log entry is written. Items of other cases
    are never part of the query, so an outsider's answer (and its count) is
    the same as for a query that matches nothing.
    """
    q = (request.GET.get("q") or "").strip()[:200]
    results, more = [], False
    if (found := search_filter(q)) is not None:
        rows = list(
            visible_evidence(request.user)
            .filter(found)
            .select_related("case")
            .order_by("-received_at")[: SEARCH_LIMIT + 1]
        )
        results, more = rows[:SEARCH_LIMIT], len(rows) > SEARCH_LIMIT
    return render(
        request,
        "custody/search.html",
        {"q": q, "results": results, "more": more, "limit": SEARCH_LIMIT},
    )


@login_required
@require_http_methods(["GET", "POST"])
@writers_only
def case_create(request):
    form = CaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            case = services.create_case(
                actor=request.user, client=client_address(request), **form.cleaned_data
            )
        except Forbidden as exc:
            raise PermissionDenied(str(exc)) from None
        except services.ServiceError as exc:
            form.add_error(None, exc.detail)
        else:
            messages.success(request, f"Case {case.reference} created.")
            return redirect("case-detail", case_id=case.pk)
    return render(request, "custody/case_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
@writers_only
def case_detail(request, case_id):
    case = get_case_for(request, case_id)
    writable = can_write_case(request.user, case)
    form = EvidenceUploadForm()
    status = 200
    if request.method == "POST":
        # Refuse before touching request.POST: reading it receives the whole upload.
        if not writable:
            raise PermissionDenied("read-only access to this case")
        form = EvidenceUploadForm(request.POST, request.FILES)
        if refused := uploads.refusal(request):
            form.add_error(None, refused.detail)
            status = refused.status
        elif form.is_valid():
            try:
                evidence = services.receive_evidence(
                    actor=request.user,
                    case=case,
                    upload=form.cleaned_data["file"],
                    description=form.cleaned_data["description"],
                    source=form.cleaned_data["source"],
                    declared_sha256=form.cleaned_data["sha256"] or None,
                    client=client_address(request),
                )
            except services.ServiceError as exc:
                form.add_error(None, exc.detail)
                status = exc.status if exc.status in (413, 503) else 400
            else:
                messages.success(request, f"Received {evidence.original_name}: sha256 {evidence.sha256}")
                return redirect("evidence-detail", evidence_id=evidence.pk)
    items = case.evidence.select_related("blob", "submitted_by", "custodian").order_by("received_at")
    return render(
        request,
        "custody/case_detail.html",
        {
            "case": case,
            "items": items,
            "form": form,
            "writable": writable,
            "members": case.members.order_by("username"),
            "member_form": AddMemberForm(),
            "analyzers": sorted(analyzer_registry.registry().values(), key=lambda m: m.NAME),
        },
        status=400 if form.errors and status == 200 else status,
    )


@login_required
@require_POST
@writers_only
def case_add_member(request, case_id):
    case = get_case_for(request, case_id)
    form = AddMemberForm(request.POST)
    if form.is_valid():
        try:
            services.add_member(
                actor=request.user,
                case=case,
                user=form.cleaned_data["username"],
                client=client_address(request),
            )
        except Forbidden as exc:
            raise PermissionDenied(str(exc)) from None
        messages.success(request, f"{form.cleaned_data['username'].username} added to the case.")
    else:
        messages.error(request, "; ".join(e for errs in form.errors.values() for e in errs))
    return redirect("case-detail", case_id=case.pk)


@login_required
def evidence_detail(request, evidence_id):
    if from_another_site(request):
        # Opening the page is logged (evidence.viewed): a link on another site
        # gets a page that asks first, the same for any id, so it neither
        # writes an entry in the user's name nor tells whether the item exists.
        return render(request, "custody/confirm_open.html", {"url": request.path})
    evidence = get_evidence_for(request, evidence_id)
    services.record_view(actor=request.user, evidence=evidence, client=client_address(request))
    entries = LogEntry.objects.filter(evidence=evidence).select_related("actor").order_by("index")
    pending = (
        evidence.transfers.filter(status=Transfer.Status.PENDING)
        .select_related("from_user", "to_user")
        .first()
    )
    can_release = (
        pending is None
        and can_write_case(request.user, evidence.case)
        and (evidence.custodian_id == request.user.pk or request.user.is_custody_admin)
    )
    accepted = [
        m for m in analyzer_registry.registry().values() if analyzer_registry.accepts(m, evidence.media_type)
    ]
    return render(
        request,
        "custody/evidence_detail.html",
        {
            "evidence": evidence,
            "entries": entries,
            "download_form": DownloadForm(),
            "pending": pending,
            "transfer_form": TransferForm(case=evidence.case, exclude=evidence.custodian)
            if can_release
            else None,
            "decision_form": TransferDecisionForm()
            if pending and pending.to_user_id == request.user.pk
            else None,
            "analyses": evidence.analyses.select_related("requested_by"),
            "analyzers": sorted(accepted, key=lambda m: m.NAME),
            "can_analyse": can_write_case(request.user, evidence.case),
        },
    )


@login_required
@require_POST
@writers_only
def evidence_transfer(request, evidence_id):
    evidence = get_evidence_for(request, evidence_id)
    form = TransferForm(request.POST, case=evidence.case, exclude=evidence.custodian)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {e}" for k, errs in form.errors.items() for e in errs))
        return redirect("evidence-detail", evidence_id=evidence.pk)
    try:
        transfer = services.release_custody(
            actor=request.user,
            evidence=evidence,
            to_user=form.cleaned_data["to_user"],
            purpose=form.cleaned_data["purpose"],
            location=form.cleaned_data["location"],
            client=client_address(request),
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except services.ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Released to {transfer.to_user.username}; waiting for them to accept.")
    return redirect("evidence-detail", evidence_id=evidence.pk)


@login_required
@require_POST
@writers_only
def transfer_decide(request, transfer_id, accept):
    from .api import get_transfer_for

    transfer = get_transfer_for(request.user, transfer_id)
    form = TransferDecisionForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    try:
        services.decide_transfer(
            actor=request.user, transfer=transfer, accept=accept, note=note, client=client_address(request)
        )
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except services.ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, "You now have custody." if accept else "Handover refused.")
    return redirect("evidence-detail", evidence_id=transfer.evidence_id)


@login_required
def evidence_report(request, evidence_id):
    """Chain-of-custody report: every entry about the item and the checkpoint that covers it."""
    from . import log, witnessing

    evidence = get_evidence_for(request, evidence_id)
    # Sign a checkpoint for the current tree first, so every entry is covered.
    latest = log.latest_checkpoint()
    checkpoints = list(Checkpoint.objects.filter(size__gt=evidence.log_index).order_by("size"))
    rows = []
    for entry in LogEntry.objects.filter(evidence=evidence).select_related("actor").order_by("index"):
        covering = next((c for c in checkpoints if c.size > entry.index), latest)
        rows.append({"entry": entry, "decoded": entry.decoded, "checkpoint": covering})
    covering = sorted({r["checkpoint"].size: r["checkpoint"] for r in rows}.values(), key=lambda c: c.size)
    return render(
        request,
        "custody/evidence_report.html",
        {
            "evidence": evidence,
            "rows": rows,
            "latest": latest,
            "covering": witnessing.checkpoint_panels(covering),
        },
    )


@login_required
@require_POST
def evidence_download(request, evidence_id):
    evidence = get_evidence_for(request, evidence_id)
    form = DownloadForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason for the download; it is recorded in the custody log.")
        return redirect("evidence-detail", evidence_id=evidence.pk)
    try:
        return evidence_file_response(
            request.user, evidence, form.cleaned_data["reason"], client_address(request)
        )
    except services.ServiceError as exc:  # the blob store is down: nothing was logged
        messages.error(request, exc.detail)
        return redirect("evidence-detail", evidence_id=evidence.pk)


@login_required
def evidence_receipt(request, evidence_id):
    from django.http import JsonResponse

    evidence = get_evidence_for(request, evidence_id)
    response = JsonResponse(evidence.receipt, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="receipt-{evidence.pk}.dsse.json"'
    return response


@login_required
@require_POST  # it is logged: a POST with the CSRF token, never a link another site can offer
def evidence_export(request, evidence_id):
    from .api import export_response

    evidence = get_evidence_for(request, evidence_id)
    include = request.POST.get("include_file") in {"1", "on", "true"}
    return export_response(request.user, evidence, include, client_address(request))


def verify_page(request):
    """The public verification page: the checks run in the visitor's browser (static/custody/verify.js).

    With ``?sha256=`` the published results are also rendered here, so the
    page reads without JavaScript; the script re-checks them and replaces them.
    """
    from forensics import publication

    from .hashing import is_sha256_hex

    sha256 = (request.GET.get("sha256") or "").strip().lower().removeprefix("sha256:")
    public = publication.public_results(sha256) if is_sha256_hex(sha256) else None
    return render(request, "public/verify.html", {"public": public, "sha256": sha256})


@login_required
@require_http_methods(["GET", "HEAD"])
def evidence_media(request, evidence_id):
    """The evidence bytes for the page's player or image viewer, inline, with HTTP Range for seeking.

    Not logged here: the URL carries a token that only a logged view of the
    evidence page mints (custody/media.py), for this user and this item, valid
    for an hour; every range the player asks for is covered by that entry.
    Only audio the browser plays and raster images are served; anything else
    (HTML, SVG, PDF...) is refused, so the bytes never run as a page here.
    """
    from django.http import HttpResponse, StreamingHttpResponse

    from . import media
    from .storage import blob_store

    evidence = get_evidence_for(request, evidence_id)
    try:
        media.check_token(request.GET.get("t", ""), request.user.pk, evidence.pk)
    except media.BadToken as exc:
        # Plain text: the project's 403 page speaks of read-only roles, which is not the reason here.
        return HttpResponse(str(exc), status=403, content_type="text/plain; charset=utf-8")
    if not media.servable(evidence.media_type):
        return HttpResponse(
            f"{evidence.media_type} is not shown in the browser: download it instead.",
            status=415,
            content_type="text/plain; charset=utf-8",
        )
    size = evidence.blob.size
    try:
        byte_range = media.parse_range(request.headers.get("Range"), size)
    except media.Unsatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    else:
        whole = media.ByteRange(0, size - 1)
        part = byte_range or whole
        if size == 0:
            response = HttpResponse(b"", status=200)
        else:
            chunks = media.read_range(lambda: blob_store().open(evidence.blob_id), part)
            response = StreamingHttpResponse(chunks, status=206 if byte_range else 200)
            response["Content-Length"] = str(part.length)
            if byte_range:
                response["Content-Range"] = f"bytes {part.start}-{part.end}/{size}"
        response["Content-Type"] = media.content_type(evidence.media_type)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = "inline"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store, private"
    # Only this site's pages may embed the bytes. Opened on its own (the
    # page's links without JavaScript), the browser's media document may load
    # the recording or picture itself and nothing else, and runs no script.
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Content-Security-Policy"] = "default-src 'none'; media-src 'self'; img-src 'self'"
    return response


@login_required
def analysis_compare(request, analysis_id):
    """The clip and the reference of an ``audio.context`` result, played in step along the alignment.

    Both recordings' bytes are played here, so opening the page logs a view
    of each (``evidence.viewed``), which covers the two players' media tokens.
    """
    from django.db import transaction
    from django.http import Http404

    from forensics import markers
    from forensics.api import get_analysis_for
    from forensics.templatetags.media_viewers import audio_context

    if from_another_site(request):
        return render(request, "custody/confirm_open.html", {"url": request.path})
    analysis = get_analysis_for(request.user, analysis_id)
    predicate = markers.predicate_of(analysis) if analysis.analyzer == markers.CONTEXT_ANALYZER else None
    segments = markers.alignment(predicate) if predicate else []
    reference_id = markers.reference_id(predicate) if predicate else None
    if not segments or reference_id is None:
        raise Http404("this analysis has no alignment to play")
    clip = get_evidence_for(request, analysis.evidence_id)
    reference = get_evidence_for(request, reference_id)
    with transaction.atomic():
        for item in (clip, reference):
            services.record_view(actor=request.user, evidence=item, client=client_address(request))
    return render(
        request,
        "forensics/context_compare.html",
        {
            "analysis": analysis,
            "clip": clip,
            "reference": reference,
            "clip_media": audio_context(request.user, clip),
            "reference_media": audio_context(request.user, reference, results=[]),
            "alignment": {"segments": segments},
        },
    )


def server_error(request):
    """handler500: an error the views did not answer, without a traceback.

    A database that cannot be reached (restarting, failed over) is 503 with
    Retry-After: nothing was done and the client may try again; anything
    else is 500. API clients get JSON ``{"detail": ...}`` as for every other
    error, browsers a short page.
    """
    import sys

    from django.db import InterfaceError, OperationalError
    from django.http import HttpResponse, JsonResponse

    unavailable = isinstance(sys.exc_info()[1], (OperationalError, InterfaceError))
    status = 503 if unavailable else 500
    detail = (
        "the database is unavailable; nothing was done, try again shortly"
        if unavailable
        else "internal error; the server's log has the details"
    )
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=status)
    else:
        response = HttpResponse(
            f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{detail.capitalize()}.</p>",
            status=status,
        )
    if unavailable:
        response["Retry-After"] = "5"
    return response
