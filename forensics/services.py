"""Every state change of an analysis: request, claim, complete, fail, re-queue, publish.

Each checks permission (where a user acts), changes state and appends its log
entry in one transaction. The Celery task is a thin wrapper around
``run_analysis``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from custody import keys, log, projection, signing
from custody.models import Case, Evidence, SigningKey, User
from custody.permissions import require_write
from custody.services import ServiceError
from custody.storage import BlobMismatch, BlobStoreUnavailable, VerifiedCopy, blob_store, verified_copy

from . import analyzers, publication, sandbox
from .analyzers.base import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_LIMIT,
    AnalysisContext,
    AnalysisError,
    validate_parameters,
)
from .models import Analysis

logger = logging.getLogger(__name__)

RESULT_PREDICATE_TYPE = "urn:custody-server:analysis-result:v1"


def describe_analyzers() -> list[dict]:
    return [
        {
            "name": m.NAME,
            "version": m.VERSION,
            "accepts": list(m.ACCEPTS),
            "description": m.DESCRIPTION,
            "limits": list(m.LIMITS),
            "parameters": m.PARAMETERS,
        }
        for m in sorted(analyzers.registry().values(), key=lambda m: m.NAME)
    ]


def _module_for(name: str, evidence: Evidence):
    module = analyzers.get(name)
    if module is None:
        available = ", ".join(sorted(analyzers.registry())) or "none"
        raise ServiceError(f"unknown analyzer {name!r}; available: {available}")
    if not analyzers.accepts(module, evidence.media_type):
        raise ServiceError(
            f"analyzer {name} does not accept {evidence.media_type} (it accepts {', '.join(module.ACCEPTS)})"
        )
    return module


def _check_parameters(module, parameters, evidence: Evidence) -> dict:
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ServiceError("parameters must be a JSON object")
    try:
        params = validate_parameters(module.PARAMETERS, parameters)
    except ValueError as exc:
        raise ServiceError(str(exc)) from None
    for name, rule in module.PARAMETERS.items():
        if rule["type"] == "evidence" and params.get(name):
            # Another item of the same case, e.g. the reference recording.
            other = (
                Evidence.objects.filter(pk=_uuid_or_none(params[name]), case=evidence.case)
                .exclude(pk=evidence.pk)
                .first()
            )
            if other is None:
                raise ServiceError(f"parameter {name!r} must be the id of another evidence item in this case")
            if not reference_accepts(module, rule, other.media_type):
                raise ServiceError(
                    f"parameter {name!r}: item {other.pk} is {other.media_type}; "
                    f"{module.NAME} reads {', '.join(reference_types(module, rule))} there"
                )
            params[name] = str(other.pk)
    return params


def reference_types(module, rule: dict) -> list[str]:
    """Media types an "evidence" parameter may name: its own "accepts", else the analyzer's ACCEPTS."""
    return list(rule.get("accepts") or module.ACCEPTS)


def reference_accepts(module, rule: dict, media_type: str) -> bool:
    return any(fnmatch.fnmatch(media_type, pattern) for pattern in reference_types(module, rule))


def _uuid_or_none(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _enqueue(analysis_id) -> None:
    """Send the run's task once the transaction commits (inside one: the row exists).

    A broker that is down does not undo the request: the run is recorded and
    queued, the failure is logged (robust), and ``resend_queued`` sends it
    again later.
    """
    Analysis.objects.filter(pk=analysis_id).update(sent_at=timezone.now())
    transaction.on_commit(lambda: _send(analysis_id), robust=True)


def _send(analysis_id) -> None:
    from .tasks import run_analysis

    run_analysis.delay(str(analysis_id))


def request_analysis(
    *,
    actor: User,
    evidence: Evidence,
    analyzer: str,
    parameters: dict | None = None,
    client: str | None = None,
) -> Analysis:
    require_write(actor, evidence.case)
    module = _module_for(analyzer, evidence)
    params = _check_parameters(module, parameters, evidence)
    return _request(actor=actor, evidence=evidence, module=module, params=params, client=client)


def _request(*, actor: User, evidence: Evidence, module, params: dict, client: str | None) -> Analysis:
    """Log the request and queue the run; permission and parameters are the caller's to check."""
    with transaction.atomic():
        analysis_id = uuid.uuid4()
        entry = log.append(
            "analysis.requested",
            actor=actor,
            case=evidence.case,
            evidence=evidence,
            client=client,
            details={
                "analysis": str(analysis_id),
                "analyzer": module.NAME,
                "version": module.VERSION,
                "parameters": _loggable(params),
                # The exact parameters, floats included (canonical leaves carry
                # none), so the analysis row is derivable from the entry.
                "parameters_json": json.dumps(params, sort_keys=True, separators=(",", ":")),
            },
        )
        projection.apply(entry)
        _enqueue(analysis_id)
    return Analysis.objects.get(pk=analysis_id)


def request_case_analysis(
    *, actor: User, case: Case, analyzer: str, parameters: dict | None = None, client: str | None = None
) -> list[Analysis]:
    """The same analysis for every item of the case that the analyzer accepts."""
    require_write(actor, case)
    module = analyzers.get(analyzer)
    if module is None:
        raise ServiceError(
            f"unknown analyzer {analyzer!r}; available: {', '.join(sorted(analyzers.registry()))}"
        )
    # An item named by an "evidence" parameter (the reference recording) is
    # not analysed against itself.
    given = parameters if isinstance(parameters, dict) else {}
    named = {
        str(given[n]) for n, rule in module.PARAMETERS.items() if rule["type"] == "evidence" and n in given
    }
    items = [
        e
        for e in case.evidence.order_by("received_at")
        if analyzers.accepts(module, e.media_type) and str(e.pk) not in named
    ]
    if not items:
        raise ServiceError(
            f"no item in this case is of a type {analyzer} accepts ({', '.join(module.ACCEPTS)})"
        )
    with transaction.atomic():
        return [
            request_analysis(actor=actor, evidence=e, analyzer=analyzer, parameters=parameters, client=client)
            for e in items
        ]


# What "run every applicable analyzer" does not request again: a run of the
# same analyzer version with the same parameters that is waiting, running or done.
_ALREADY = (Analysis.Status.QUEUED, Analysis.Status.RUNNING, Analysis.Status.SUCCEEDED)


SKIP_REASONS = {
    "needs_parameter": "it needs a parameter with no default (choose it in the analyzer's own form)",
    "already": "already queued, running or succeeded with this version and the same parameters",
}


def _same_run_key(evidence_id, analyzer: str, version: str, params: dict) -> tuple:
    return (str(evidence_id), analyzer, version, json.dumps(params, sort_keys=True, separators=(",", ":")))


def request_all_analyses(
    *, actor: User, case: Case, evidence: Evidence | None = None, client: str | None = None
) -> tuple[list[Analysis], list[dict]]:
    """Every applicable analyzer, with its default parameters, on one item (or every item of the case).

    Returns (requested, skipped); each skipped one is {"evidence", "name",
    "analyzer", "kind", "reason"} (kind: a key of SKIP_REASONS): an analyzer
    with a parameter that has no default (the reference recording of
    audio.context: which one is for a person to choose), or a run of the same
    version and parameters already queued, running or succeeded. Analyzers that do not read the item's type are
    neither requested nor listed. Permission is checked once; the requests
    go in one transaction, one log entry each (as request_analysis writes).
    """
    require_write(actor, case)
    if evidence is not None and evidence.case_id != case.pk:
        raise ServiceError("the item is not in this case")
    modules = sorted(analyzers.registry().values(), key=lambda m: m.NAME)
    requested: list[Analysis] = []
    skipped: list[dict] = []
    with transaction.atomic():
        # Locked, so two clicks at once do not both request the same runs.
        items = list(
            Evidence.objects.select_for_update()
            .filter(case=case, **({"pk": evidence.pk} if evidence is not None else {}))
            .select_related("case")
            .order_by("received_at", "pk")
        )
        if not items:
            raise ServiceError("this case has no evidence items yet")
        done = {}
        for row in Analysis.objects.filter(evidence__in=items, status__in=_ALREADY).order_by("requested_at"):
            done.setdefault(
                _same_run_key(row.evidence_id, row.analyzer, row.analyzer_version, row.parameters), row
            )
        for item in items:
            for module in modules:
                if not analyzers.accepts(module, item.media_type):
                    continue
                skip = {"evidence": str(item.pk), "name": item.original_name, "analyzer": module.NAME}
                missing = [n for n, rule in module.PARAMETERS.items() if "default" not in rule]
                if missing:
                    skipped.append(
                        skip
                        | {
                            "kind": "needs_parameter",
                            "reason": f"needs {', '.join(missing)} (no default): "
                            "choose it in the analyzer's own form",
                        }
                    )
                    continue
                params = validate_parameters(module.PARAMETERS, {})
                earlier = done.get(_same_run_key(item.pk, module.NAME, module.VERSION, params))
                if earlier is not None:
                    skipped.append(
                        skip
                        | {
                            "kind": "already",
                            "reason": f"already {earlier.status} with version {module.VERSION} "
                            f"and the same parameters (analysis {earlier.pk})",
                            "analysis": str(earlier.pk),
                        }
                    )
                    continue
                requested.append(
                    _request(actor=actor, evidence=item, module=module, params=params, client=client)
                )
    return requested, skipped


def _loggable(params: dict) -> dict:
    """Log entries carry no floats (canonical bytes must be re-derivable): stringify them."""
    return {k: (repr(v) if isinstance(v, float) else v) for k, v in params.items()}


# --- running ------------------------------------------------------------------


def claim(analysis_id, worker: str) -> Analysis | None:
    """Take a queued analysis for this worker; None if someone else has it or it is done."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional UPDATE: of two workers given the same message, one wins.
        won = Analysis.objects.filter(pk=analysis_id, status=Analysis.Status.QUEUED).update(
            status=Analysis.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            attempts=F("attempts") + 1,
        )
        if not won:
            return None
        analysis = Analysis.objects.select_related("evidence__case", "evidence__blob").get(pk=analysis_id)
        entry = log.append(
            "analysis.started",
            case=analysis.evidence.case,
            evidence=analysis.evidence,
            details={
                "analysis": str(analysis.id),
                "analyzer": analysis.analyzer,
                "worker": worker,
                "attempt": analysis.attempts,
            },
        )
        projection.apply(entry)
        analysis.refresh_from_db()
    return analysis


def _still_ours(analysis: Analysis):
    return Analysis.objects.filter(
        pk=analysis.pk, status=Analysis.Status.RUNNING, worker=analysis.worker, attempts=analysis.attempts
    )


def heartbeat(analysis: Analysis) -> bool:
    return bool(_still_ours(analysis).update(heartbeat_at=timezone.now()))


def _signed_request(analysis: Analysis) -> dict:
    """The ``analysis.requested`` entry of this analysis, if the server signed it ({} if not)."""
    from custody.models import LogEntry

    entry = log.signed_entry(LogEntry.objects.filter(index=analysis.request_log_index).first())
    if entry.get("action") != "analysis.requested" or (entry.get("details") or {}).get("analysis") != str(
        analysis.pk
    ):
        return {}
    return entry


def _request_problem(analysis: Analysis, entry: dict) -> str | None:
    """Why the run must not go ahead as the row says (None: it may).

    What is analysed, by which analyzer and with which parameters is what the
    signed ``analysis.requested`` entry says, not what the row says: a row
    retargeted in the database (another item, other parameters) for the run,
    and put back after, would otherwise get a signed result of something
    nobody asked for.
    """
    if not entry:
        return f"no signed request entry of this analysis at log index {analysis.request_log_index}"
    details, requested = entry["details"], entry.get("evidence") or {}
    try:
        parameters = json.loads(details.get("parameters_json") or "null")
    except ValueError:
        parameters = None
    if (
        requested.get("id") != str(analysis.evidence_id)
        or requested.get("sha256") != analysis.evidence.blob_id
        or details.get("analyzer") != analysis.analyzer
        or details.get("version") != analysis.analyzer_version
        or parameters != analysis.parameters
    ):
        return (
            f"the analysis row does not match its signed request (log entry {entry['index']}): its item, "
            "analyzer or parameters were changed in the database; not run"
        )
    return None


def run_analysis(analysis_id, worker: str) -> str:
    """Claim, copy and check the bytes, analyse the copy, store and sign. Returns the final status (or 'skipped')."""
    analysis = claim(analysis_id, worker)
    if analysis is None:
        return "skipped"
    evidence = analysis.evidence
    module = analyzers.get(analysis.analyzer)
    started = timezone.now()
    beat = _Heartbeat(analysis)
    inputs = ExitStack()  # local copies of the stored inputs
    beat.start()
    try:
        request = _signed_request(analysis)
        problem = _request_problem(analysis, request)
        if problem is not None:
            logger.error("analysis %s not run: %s", analysis.pk, problem)
            requested = Evidence.objects.filter(pk=(request.get("evidence") or {}).get("id")).first()
            if requested is not None:
                analysis.evidence = requested  # the failure entry names the item the log says was requested
            return fail(analysis, problem)
        if module is None or module.VERSION != analysis.analyzer_version:
            return fail(
                analysis, f"analyzer {analysis.analyzer} {analysis.analyzer_version} is not installed here"
            )
        # A private scratch directory, named by attempt so that the sweeper
        # can remove a dead run's (sweep_stale).
        workdir = inputs.enter_context(
            tempfile.TemporaryDirectory(
                prefix=f"analysis-{analysis.pk}-{analysis.attempts}-", dir=settings.FILE_UPLOAD_TEMP_DIR
            )
        )
        # The bytes analysed must be the bytes received, with no window for a
        # file rewritten in the data dir: a private copy that no path names,
        # hashed as it is made (custody.storage.verified_copy, whichever the
        # store), which the analyzer opens by its descriptor; kept until the
        # run ends (and freed by the kernel if the worker is killed).
        short = _short_of_space(workdir, evidence.blob.size)
        if short:
            return fail(analysis, short)
        try:
            subject = inputs.enter_context(verified_copy(evidence.blob_id, workdir))
        except FileNotFoundError:
            return fail(analysis, "the stored evidence file is missing")
        except BlobMismatch as exc:
            return fail(
                analysis, f"the stored bytes no longer match the evidence's SHA-256 (now {exc.actual})"
            )
        except BlobStoreUnavailable as exc:
            return retry_or_fail(analysis, f"the blob store is unavailable: {exc}")
        except OSError as exc:  # e.g. the disk filled up meanwhile
            return retry_or_fail(analysis, f"the private copy of the evidence could not be made: {exc}")
        params = dict(analysis.parameters)
        ctx = AnalysisContext(
            original_name=evidence.original_name,
            media_type=evidence.media_type,
            size=evidence.blob.size,
            workdir=workdir,
        )
        time_limit, memory_limit = limits_for(module)
        try:
            call_params, copies = _resolve_evidence_parameters(module, params, ctx, inputs)
            # In a child process, so that no input can outlive its time
            # limit, exhaust the worker's memory or take the worker down.
            output, ctx = sandbox.run(
                module.__name__,
                subject.path,
                call_params,
                ctx,
                time_limit=time_limit,
                memory_limit=memory_limit,
                pass_fds=(subject.fd, *(c.fd for c in copies)),
            )
        except (sandbox.ChildDied, BlobStoreUnavailable) as exc:
            # Perhaps the machine, not the input (the OOM killer takes the
            # largest process; a store down): another attempt, up to the cap.
            return retry_or_fail(analysis, str(exc))
        except AnalysisError as exc:
            return fail(analysis, str(exc) or exc.__class__.__name__)
        except MemoryError:
            return fail(analysis, "the analysis ran out of memory")
        except Exception as exc:  # a bug or an input the analyzer did not foresee
            return fail(analysis, f"analyzer error: {exc.__class__.__name__}: {exc}")
        inputs.close()  # the input copies and the scratch directory go before the results are stored
        return complete(analysis, module, output, ctx, started, timezone.now())
    finally:
        inputs.close()
        beat.stop()


def limits_for(module) -> tuple[int, int]:
    """(seconds, bytes) for a run of this analyzer: the settings' override, else the module's own."""
    name = module.NAME
    times, sizes = settings.CUSTODY_ANALYSIS_TIME_LIMITS, settings.CUSTODY_ANALYSIS_MEMORY_LIMITS
    time_limit = times.get(name) or times.get("*") or getattr(module, "TIME_LIMIT", DEFAULT_TIME_LIMIT)
    memory_limit = sizes.get(name) or sizes.get("*") or getattr(module, "MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
    return time_limit, memory_limit


def _short_of_space(directory: str, size: int, what: str = "the file") -> str | None:
    """Why a private copy of ``what`` (``size`` bytes) may not be made in ``directory`` (None: it may).

    The copy must leave CUSTODY_FREE_SPACE_RESERVE_BYTES free, as an upload
    must: the reserve is for the database, the log and accepted uploads.
    """
    if shutil.disk_usage(directory).free - size >= settings.CUSTODY_FREE_SPACE_RESERVE_BYTES:
        return None
    return (
        f"not enough free disk space for the analysis's private copy of {what} ({size} bytes); "
        "request the analysis again once there is room"
    )


def _resolve_evidence_parameters(
    module, params: dict, ctx: AnalysisContext, inputs: ExitStack
) -> tuple[dict, list[VerifiedCopy]]:
    """Replace "evidence" parameters by a verified private copy of the other item, made like the subject's.

    Returns the parameters (the copies' paths in them) and the copies, kept
    until ``inputs`` is closed.
    """
    out, copies = dict(params), []
    for name, rule in module.PARAMETERS.items():
        if rule["type"] == "evidence" and params.get(name):
            other = Evidence.objects.select_related("blob").get(pk=params[name])
            short = _short_of_space(ctx.workdir, other.blob.size, f"item {other.pk}")
            if short:
                raise AnalysisError(short)
            try:
                copy = inputs.enter_context(verified_copy(other.blob_id, ctx.workdir))
            except FileNotFoundError:
                raise AnalysisError(f"the stored file of item {other.pk} is missing") from None
            except BlobMismatch:
                raise AnalysisError(
                    f"the stored bytes of item {other.pk} no longer match its SHA-256"
                ) from None
            out[name] = copy.path
            copies.append(copy)
            ctx.references[name] = {"id": str(other.pk), "sha256": other.blob_id}
    return out, copies


class _Heartbeat:
    """Marks the run alive every few seconds, so the sweeper re-queues only dead runs."""

    def __init__(self, analysis: Analysis):
        import threading

        self.analysis = analysis
        self.interval = max(1.0, settings.CUSTODY_ANALYSIS_STALE_SECONDS / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="analysis-heartbeat")

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        from django.db import DatabaseError, connection

        try:
            while not self._stop.wait(self.interval):
                try:
                    heartbeat(self.analysis)
                except DatabaseError as exc:
                    # A busy database (SQLite's lock, a PostgreSQL restart) misses
                    # one beat, not all the others: a dead thread would let the
                    # sweeper take a live run for a dead one.
                    logger.warning("analysis %s: heartbeat missed: %s", self.analysis.id, exc)
                    connection.close()
        finally:
            connection.close()


def fail(analysis: Analysis, reason: str, *, stale_before=None) -> str:
    """End the run as failed; ``stale_before``: only if its heartbeat is older (the sweeper's check)."""
    reason = reason[:2000]
    with transaction.atomic():
        ours = _still_ours(analysis)
        if stale_before is not None:
            ours = ours.filter(heartbeat_at__lt=stale_before)
        if not ours.update(status=Analysis.Status.FAILED, finished_at=timezone.now(), error=reason):
            return "skipped"  # re-queued meanwhile: the newer run decides
        entry = log.append(
            "analysis.failed",
            case=analysis.evidence.case,
            evidence=analysis.evidence,
            details={"analysis": str(analysis.id), "analyzer": analysis.analyzer, "reason": reason},
        )
        projection.apply(entry)
    return Analysis.Status.FAILED


def _python_versions() -> dict:
    return {"python": platform.python_version(), "implementation": platform.python_implementation()}


def complete(analysis: Analysis, module, output: dict, ctx: AnalysisContext, started, finished) -> str:
    evidence = analysis.evidence
    findings = output.get("findings", [])
    artifacts_meta = [
        {"name": a.name, "media_type": a.media_type, "digest": {"sha256": a.sha256}} for a in ctx.artifacts
    ]
    statement = signing.in_toto_statement(
        subject=[{"name": f"evidence/{evidence.pk}", "digest": {"sha256": evidence.blob_id}}],
        predicate_type=RESULT_PREDICATE_TYPE,
        predicate={
            "analysis": str(analysis.pk),
            "evidence": str(evidence.pk),
            "analyzer": {"name": module.NAME, "version": module.VERSION},
            "parameters": analysis.parameters,
            # Other evidence items the analysis read (e.g. a reference recording), by digest.
            "references": ctx.references,
            "libraries": {**output.get("libraries", {}), **_python_versions()},
            "started_at": log.format_time(started),
            "finished_at": log.format_time(finished),
            "findings": findings,
            "artifacts": artifacts_meta,
            "limits": list(module.LIMITS),
            "log": {"origin": settings.CUSTODY_LOG_ORIGIN, "request_index": analysis.request_log_index},
        },
    )
    key_row, key = keys.active_private_key(SigningKey.Purpose.RESULTS)
    try:
        envelope = signing.sign_statement(statement, key)
    except TypeError as exc:
        return fail(analysis, f"analyzer output is not valid JSON: {exc}")
    payload = signing.b64decode(envelope["payload"])
    statement_sha256 = hashlib.sha256(payload).hexdigest()
    # Blobs first (content-addressed, harmless if the transaction then fails).
    # The statement's bytes are a blob too: the log records their digest and
    # the signature, so the signed result is derivable from the log + blobs.
    try:
        blob_store().put_bytes(payload, statement_sha256)
        for artifact in ctx.artifacts:
            blob_store().put_bytes(artifact.data, artifact.sha256)
    except BlobStoreUnavailable as exc:
        return retry_or_fail(analysis, str(exc))
    with transaction.atomic():
        # Claim the completion: the run must still be ours (not re-queued).
        if not _still_ours(analysis).update(status=Analysis.Status.SUCCEEDED, finished_at=finished):
            transaction.set_rollback(True)
            return "skipped"
        entry = log.append(
            "analysis.completed",
            case=evidence.case,
            evidence=evidence,
            details={
                "analysis": str(analysis.pk),
                "analyzer": module.NAME,
                "version": module.VERSION,
                "statement_sha256": statement_sha256,
                "keyid": key_row.keyid,
                "sig": envelope["signatures"][0]["sig"],
                "findings": len(findings),
                "artifacts": [
                    {
                        "sha256": a.sha256,
                        "sha1": _digest("sha1", a.data),
                        "md5": _digest("md5", a.data),
                        "size": len(a.data),
                        "name": a.name,
                        "media_type": a.media_type,
                    }
                    for a in _unique_artifacts(ctx.artifacts)
                ],
            },
        )
        projection.apply(entry)
    return Analysis.Status.SUCCEEDED


def _unique_artifacts(artifacts):
    """One artifact per blob for an analysis (two identical pictures are one file)."""
    seen = set()
    for artifact in artifacts:
        if artifact.sha256 not in seen:
            seen.add(artifact.sha256)
            yield artifact


def _digest(name: str, data: bytes) -> str:
    return hashlib.new(name, data).hexdigest()


def _requeue(analysis: Analysis, *, stale_before=None, reason: str | None = None) -> bool:
    """Put the run back in the queue for another attempt; False if it is no longer ours."""
    with transaction.atomic():
        ours = _still_ours(analysis)
        if stale_before is not None:
            ours = ours.filter(heartbeat_at__lt=stale_before)
        if not ours.update(status=Analysis.Status.QUEUED, worker=""):
            return False
        details = {
            "analysis": str(analysis.pk),
            "stale_worker": analysis.worker,
            "attempt": analysis.attempts,
        }
        if reason:
            details["reason"] = reason[:2000]
        entry = log.append(
            "analysis.requeued", case=analysis.evidence.case, evidence=analysis.evidence, details=details
        )
        projection.apply(entry)
        _enqueue(analysis.pk)
    return True


def _attempts_used_up(analysis: Analysis) -> str | None:
    """The reason to give up on a run, once it has been started the allowed number of times."""
    cap = settings.CUSTODY_ANALYSIS_MAX_ATTEMPTS
    if analysis.attempts < cap:
        return None
    return f"gave up after {analysis.attempts} attempts (the cap is {cap})"


def retry_or_fail(analysis: Analysis, reason: str) -> str:
    """A run whose analysis process died: re-queue it, or fail it once the attempts are used up."""
    used_up = _attempts_used_up(analysis)
    if used_up:
        return fail(analysis, f"{reason}; {used_up}")
    return Analysis.Status.QUEUED if _requeue(analysis, reason=reason) else "skipped"


def sweep_stale() -> list[str]:
    """Re-queue runs whose worker stopped sending heartbeats (killed, machine lost).

    A run that has already been started CUSTODY_ANALYSIS_MAX_ATTEMPTS times
    is failed instead: an input that keeps killing its workers must not be
    handed to one worker after another forever.
    """
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CUSTODY_ANALYSIS_STALE_SECONDS)
    requeued = []
    for analysis in Analysis.objects.filter(
        status=Analysis.Status.RUNNING, heartbeat_at__lt=cutoff
    ).select_related("evidence__case"):
        used_up = _attempts_used_up(analysis)
        if used_up:
            reason = f"the worker stopped (killed, out of memory or lost) during every attempt; {used_up}"
            ended = fail(analysis, reason, stale_before=cutoff) != "skipped"
        else:
            ended = _requeue(analysis, stale_before=cutoff)
        if not ended:
            continue
        # The dead attempt's scratch directory (it never reached its cleanup);
        # named by attempt, so a new run's directory is never touched.
        for leftover in Path(settings.FILE_UPLOAD_TEMP_DIR).glob(
            f"analysis-{analysis.pk}-{analysis.attempts}-*"
        ):
            shutil.rmtree(leftover, ignore_errors=True)
        if not used_up:
            requeued.append(str(analysis.pk))
    return requeued


def resend_queued() -> list[str]:
    """Send again the task of queued runs whose message was sent long ago; returns their ids.

    A message the broker lost (Redis restarted without persistence, a broker
    down when the request was committed) would leave its run queued forever.
    After CUSTODY_ANALYSIS_RESEND_SECONDS the message is sent again; if the
    first one was only waiting in a long queue, the run is claimed once and
    the other message is skipped (``claim`` is a conditional UPDATE). Each run
    is re-sent at most once per period, so a backlog does not snowball.
    """
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CUSTODY_ANALYSIS_RESEND_SECONDS)
    old = Q(sent_at__lt=cutoff) | Q(sent_at=None, requested_at__lt=cutoff)
    resent = []
    for analysis_id in Analysis.objects.filter(old, status=Analysis.Status.QUEUED).values_list(
        "pk", flat=True
    ):
        # Taken like a claim: of two sweepers, one sends.
        if not Analysis.objects.filter(old, pk=analysis_id, status=Analysis.Status.QUEUED).update(
            sent_at=timezone.now()
        ):
            continue
        try:
            _send(analysis_id)
        except Exception as exc:  # the broker is down: the next sweep tries again
            Analysis.objects.filter(pk=analysis_id).update(sent_at=None)
            logger.warning("could not re-send analysis %s: %s", analysis_id, exc)
            break
        resent.append(str(analysis_id))
    return resent


# --- publishing ---------------------------------------------------------------


def publish_result(
    *, actor: User, analysis: Analysis, client: str | None = None, disclose_references: bool = False
) -> Analysis:
    """Make a signed result visible on the public page and API, by the evidence's SHA-256.

    What becomes public is a separate public statement (forensics/publication.py),
    never the internal one; ``disclose_references`` adds the SHA-256 of the
    other items the analysis read (e.g. the reference recording) to it.
    """
    require_write(actor, analysis.evidence.case)
    if analysis.status != Analysis.Status.SUCCEEDED:
        raise ServiceError(f"only a succeeded analysis can be published (this one is {analysis.status})", 409)
    with transaction.atomic():
        locked = Analysis.objects.select_for_update().get(pk=analysis.pk)
        if locked.published_at is not None:
            return locked
        public = publication.build(locked, disclose_references=disclose_references)
        # Two entries in one transaction, so consecutive under the log lock.
        # The first is the custody record, read by the case: who published
        # which analysis. The second is the announcement anyone may read: the
        # evidence by SHA-256 only and the public statement's digest and
        # signature, with no analysis id, case or user name (an outsider can
        # check that this exact statement was published, and when).
        entry = log.append(
            "result.published",
            actor=actor,
            case=analysis.evidence.case,
            evidence=analysis.evidence,
            client=client,
            details={
                "analysis": str(analysis.pk),
                "analyzer": {"name": locked.analyzer, "version": locked.analyzer_version},
                "statement_sha256": locked.statement_sha256,
                "result_entry": locked.result_log_index,
                **public.log_details(),
                "disclosed_references": disclose_references,
            },
        )
        projection.apply(entry)
        announcement = log.append(
            "result.announced",
            case=analysis.evidence.case,
            evidence=analysis.evidence,
            public=True,
            details={
                "published_entry": entry.index,
                "analyzer": {"name": locked.analyzer, "version": locked.analyzer_version},
                **public.log_details(),
            },
        )
        projection.apply(announcement)
        locked.refresh_from_db()
        return locked


def worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}:{time.monotonic_ns()}"
