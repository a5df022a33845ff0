"""Getting checkpoints cosigned by witnesses (C2SP tlog-witness), the log's side.

For each configured witness: send the newest checkpoint with a consistency
proof from the size that witness last cosigned (0 the first time), check
the cosignature it returns against the configured verifier key, store it.
A witness that refuses (rollback, fork, bad proof, key not trusted) is
reported loudly: logger.error, its status row, the admin. A witness that
cannot be reached only delays finality; intake never waits on witnesses.

No database transaction or lock is held during the HTTP calls: with SQLite
that would stop intake for as long as a witness takes to answer.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import time
import urllib.parse
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import cosign, log, signing
from .models import Checkpoint, Cosignature, WitnessStatus

logger = logging.getLogger(__name__)

MAX_RESPONSE = 64 * 1024
# Cosignatures stamped further ahead than this are refused (the spec allows
# it): a witness with a clock that far off is not stating a useful time.
MAX_FUTURE_SECONDS = 600


@dataclass(frozen=True)
class Witness:
    url: str
    cosigner: cosign.Cosigner

    @property
    def name(self) -> str:
        return self.cosigner.name

    @property
    def vkey(self) -> str:
        return self.cosigner.vkey


@dataclass
class Outcome:
    witness: Witness
    state: str  # a WitnessStatus.State value
    size: int
    message: str = ""

    @property
    def transient(self) -> bool:
        """Worth retrying soon: the witness did not answer, it did not refuse."""
        return self.state == WitnessStatus.State.UNREACHABLE


class Unreachable(Exception):
    pass


class Refused(Exception):
    pass


def configured_witnesses() -> list[Witness]:
    return [
        Witness(url=url, cosigner=cosign.parse_verifier_key(vkey)) for url, vkey in settings.CUSTODY_WITNESSES
    ]


def quorum() -> int:
    """How many configured witnesses must cosign a checkpoint for it to be final."""
    witnesses = settings.CUSTODY_WITNESSES
    wanted = settings.CUSTODY_WITNESS_QUORUM or len(witnesses)
    return min(wanted, len(witnesses))


# --- HTTP -------------------------------------------------------------------


def post_add_checkpoint(url: str, body: bytes, timeout: float) -> tuple[int, str, str]:
    """POST <url>/add-checkpoint; returns (status, content type, text). Unreachable on transport errors.

    http.client rather than urllib: no proxy taken from the environment and
    no redirects followed, the request goes to the configured address only.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"witness URL {url!r} is not http(s)")
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(
            "POST",
            parts.path.rstrip("/") + "/add-checkpoint",
            body=body,
            headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "custody-server"},
        )
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if len(data) > MAX_RESPONSE:
        raise Refused(f"witness answered with more than {MAX_RESPONSE} bytes")
    return response.status, response.getheader("Content-Type", ""), data.decode("utf-8", "replace")


def request_body(old_size: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old_size}"] + [signing.b64(h) for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode()


# --- submitting -------------------------------------------------------------


def _status_row(witness: Witness) -> WitnessStatus:
    row, _ = WitnessStatus.objects.get_or_create(
        witness_vkey=witness.vkey, defaults={"witness_name": witness.name, "url": witness.url}
    )
    if row.url != witness.url or row.witness_name != witness.name:
        WitnessStatus.objects.filter(pk=row.pk).update(url=witness.url, witness_name=witness.name)
    return row


def _proof(old_size: int, size: int) -> list[bytes]:
    # tlog-witness: empty proof from size 0 and between equal sizes.
    if old_size == 0 or old_size >= size:
        return []
    return log.consistency_proof(old_size, size)


def _explain(status: int, text: str, old_size: int, size: int) -> str:
    detail = text.strip()[:300]
    if status == 400 and old_size > size:
        return (
            f"ROLLBACK refused: the witness has cosigned size {old_size}, the log now shows size {size} "
            f"(witness: {detail})"
        )
    if status == 403:
        return f"the witness does not accept the log's signature (is the log key pinned there?): {detail}"
    if status == 404:
        return f"the witness does not know the log's origin {settings.CUSTODY_LOG_ORIGIN!r}: {detail}"
    if status == 409 and detail == str(old_size):
        return (
            f"FORK refused: the witness has cosigned another root at size {old_size}, the log's root differs "
            f"({detail})"
        )
    if status == 422:
        return (
            f"FORK refused: the consistency proof from size {old_size} to {size} does not lead from the "
            f"root the witness cosigned (witness: {detail})"
        )
    return f"witness answered {status}: {detail}"


def submit(witness: Witness, checkpoint: Checkpoint) -> Outcome:
    """Ask one witness to cosign ``checkpoint``; store its cosignature; record the outcome."""
    row = _status_row(witness)
    size = checkpoint.size
    if row.last_cosigned_size == size and checkpoint.cosignatures.filter(witness_vkey=witness.vkey).exists():
        return Outcome(witness, WitnessStatus.State.OK, size, "already cosigned")
    old_size = row.last_cosigned_size
    timeout = settings.CUSTODY_WITNESS_TIMEOUT
    try:
        for attempt in range(2):
            if old_size > size:
                proof: list[bytes] = []  # none exists: the witness will refuse, as it should
            else:
                proof = _proof(old_size, size)
            status, content_type, text = post_add_checkpoint(
                witness.url, request_body(old_size, proof, checkpoint.note), timeout
            )
            if status == 409 and content_type.split(";")[0].strip() == "text/x.tlog.size" and attempt == 0:
                try:
                    witness_size = int(text.strip())
                except ValueError:
                    raise Refused(f"witness answered 409 with a malformed size {text[:40]!r}") from None
                if witness_size < old_size:
                    logger.warning(
                        "witness %s reports size %d, below the %d it cosigned for us: has it lost its state?",
                        witness.name,
                        witness_size,
                        old_size,
                    )
                if witness_size != old_size:
                    # Our record of the witness is stale (a lost row, another
                    # server, an earlier answer lost): resend from its size.
                    logger.info(
                        "witness %s has cosigned size %d, not %d: resending",
                        witness.name,
                        witness_size,
                        old_size,
                    )
                    old_size = witness_size
                    continue
            break
        if status >= 500:
            raise Unreachable(f"witness error {status}: {text.strip()[:200]}")
        if status != 200:
            raise Refused(_explain(status, text, old_size, size))
        found = cosign.cosignatures_by(
            cosign.add_signature_lines(checkpoint.note, text.splitlines()), [witness.cosigner]
        )
        if witness.vkey not in found:
            raise Refused("witness answered 200 without a cosignature by its configured key")
        line, timestamp = found[witness.vkey]
        if timestamp > time.time() + MAX_FUTURE_SECONDS:
            raise Refused(f"cosignature is dated {timestamp}, in the future")
    except Unreachable as exc:
        message = f"witness unreachable: {exc}"  # no URL: this text is public (log/witnesses)
        logger.warning(
            "witness %s at %s: %s (checkpoint %d not cosigned by it yet)",
            witness.name,
            witness.url,
            message,
            size,
        )
        _record_failure(row, WitnessStatus.State.UNREACHABLE, message)
        return Outcome(witness, WitnessStatus.State.UNREACHABLE, size, message)
    except (Refused, ValueError) as exc:
        message = str(exc)
        logger.error("witness %s REFUSED checkpoint %d: %s", witness.name, size, message)
        _record_failure(row, WitnessStatus.State.REFUSED, message)
        return Outcome(witness, WitnessStatus.State.REFUSED, size, message)
    _store(witness, checkpoint, line, timestamp)
    return Outcome(witness, WitnessStatus.State.OK, size)


def _record_failure(row: WitnessStatus, state: str, message: str) -> None:
    now = timezone.now()
    WitnessStatus.objects.filter(pk=row.pk).update(
        state=state, last_error=message, last_error_at=now, last_attempt_at=now
    )


def _store(witness: Witness, checkpoint: Checkpoint, line: str, timestamp: int) -> None:
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                Cosignature.objects.create(
                    checkpoint=checkpoint,
                    witness_name=witness.name,
                    witness_vkey=witness.vkey,
                    line=line,
                    signed_at=dt.datetime.fromtimestamp(timestamp, tz=dt.UTC),
                    received_at=now,
                )
        except IntegrityError:
            pass  # a concurrent run stored this witness's cosignature first
        # Only ever forward: two runs racing must not move the size back.
        WitnessStatus.objects.filter(
            witness_vkey=witness.vkey, last_cosigned_size__lte=checkpoint.size
        ).update(last_cosigned_size=checkpoint.size)
        WitnessStatus.objects.filter(witness_vkey=witness.vkey).update(
            state=WitnessStatus.State.OK, last_error="", last_attempt_at=now, last_success_at=now
        )
    logger.info("witness %s cosigned checkpoint %d", witness.name, checkpoint.size)


def witness_checkpoints() -> list[Outcome]:
    """Submit the newest checkpoint to every configured witness (signing one if the log grew)."""
    witnesses = configured_witnesses()
    if not witnesses:
        return []
    checkpoint = log.latest_checkpoint()
    return [submit(witness, checkpoint) for witness in witnesses]


def witnessed_size(witness: Witness, checkpoint: Checkpoint) -> int | None:
    """The largest tree of this log the witness had cosigned (asked without changing its state).

    An ``old 0`` request is answered 409 with the witness's size by any
    witness that has cosigned something; one that has cosigned nothing takes
    it as a first checkpoint (harmless: the log's own, signed), and the answer
    is None: it had cosigned nothing. Raises Unreachable or Refused.
    """
    status, _, text = post_add_checkpoint(
        witness.url, request_body(0, [], checkpoint.note), settings.CUSTODY_WITNESS_TIMEOUT
    )
    if status == 200:
        return None
    if status == 409:
        try:
            return int(text.strip().splitlines()[0])
        except (ValueError, IndexError):
            raise Refused(f"witness answered 409 without a size: {text[:200]!r}") from None
    raise Refused(f"witness answered {status}: {text[:200]!r}")


# --- reading ----------------------------------------------------------------


def cosigned_note(checkpoint: Checkpoint) -> str:
    """The checkpoint's signed note with the stored cosignature lines of the configured witnesses appended."""
    vkeys = [vkey for _, vkey in settings.CUSTODY_WITNESSES]
    lines = list(
        checkpoint.cosignatures.filter(witness_vkey__in=vkeys)
        .order_by("witness_name", "pk")
        .values_list("line", flat=True)
    )
    return cosign.add_signature_lines(checkpoint.note, lines)


def is_final(checkpoint: Checkpoint) -> bool:
    """Cosigned by at least the quorum of the configured witnesses (never, if none is configured)."""
    needed = quorum()
    if needed == 0:
        return False
    vkeys = {vkey for _, vkey in settings.CUSTODY_WITNESSES}
    cosigned = set(
        checkpoint.cosignatures.filter(witness_vkey__in=vkeys).values_list("witness_vkey", flat=True)
    )
    return len(cosigned) >= needed


def latest_final_checkpoint() -> Checkpoint | None:
    """The largest checkpoint cosigned by a quorum of the configured witnesses."""
    needed = quorum()
    if needed == 0:
        return None
    vkeys = [vkey for _, vkey in settings.CUSTODY_WITNESSES]
    return (
        Checkpoint.objects.annotate(
            n=Count(
                "cosignatures__witness_vkey", filter=Q(cosignatures__witness_vkey__in=vkeys), distinct=True
            )
        )
        .filter(n__gte=needed)
        .order_by("-size")
        .first()
    )


def status_report() -> dict:
    """Each configured witness's status and whether the current checkpoint is final (JSON-ready)."""
    checkpoint = log.latest_checkpoint()
    rows = {row.witness_vkey: row for row in WitnessStatus.objects.all()}
    cosigned = set(checkpoint.cosignatures.values_list("witness_vkey", flat=True))

    def when(value):
        return log.format_time(value) if value else None

    witnesses = []
    for witness in configured_witnesses():
        row = rows.get(witness.vkey)
        witnesses.append(
            {
                "name": witness.name,
                "vkey": witness.vkey,
                "state": row.state if row else WitnessStatus.State.NEW,
                "last_cosigned_size": row.last_cosigned_size if row else 0,
                "cosigned_current": witness.vkey in cosigned,
                "last_attempt_at": when(row.last_attempt_at) if row else None,
                "last_success_at": when(row.last_success_at) if row else None,
                "last_error": row.last_error if row else "",
                "last_error_at": when(row.last_error_at) if row else None,
            }
        )
    final = latest_final_checkpoint()
    return {
        "checkpoint": {"size": checkpoint.size, "root": signing.b64(bytes(checkpoint.root))},
        "quorum": quorum(),
        "cosignatures": sum(1 for w in witnesses if w["cosigned_current"]),
        "final": is_final(checkpoint),
        "latest_final_size": final.size if final else None,
        "witnesses": witnesses,
    }


def finality(checkpoint: Checkpoint) -> dict:
    """Who cosigned ``checkpoint`` and whether that makes it final, for the pages (JSON-ready).

    Only cosignatures by the witnesses configured now count towards the
    quorum, as in ``is_final``. ``extended_by`` names the newest final
    checkpoint when this one is not final itself but a final one extends it:
    a consistency proof between the two then makes it final for anyone who
    checks that proof.
    """
    configured = configured_witnesses()
    names = {w.vkey: w.name for w in configured}
    rows = checkpoint.cosignatures.filter(witness_vkey__in=list(names)).order_by("witness_name", "pk")
    cosigned = []
    for row in rows:
        if row.witness_vkey not in {c["vkey"] for c in cosigned}:
            cosigned.append({"name": row.witness_name, "vkey": row.witness_vkey, "signed_at": row.signed_at})
    final = bool(configured) and is_final(checkpoint)
    extended_by = None
    if configured and not final:
        later = latest_final_checkpoint()
        if later is not None and later.size > checkpoint.size:
            extended_by = later.size
    return {
        "size": checkpoint.size,
        "configured": len(configured),
        "witnesses": [w.name for w in configured],
        "quorum": quorum(),
        "cosigned": len(cosigned),
        "cosigned_by": [
            {"name": c["name"], "vkey": c["vkey"], "signed_at": log.format_time(c["signed_at"])}
            for c in cosigned
        ],
        "not_cosigned": [w.name for w in configured if w.vkey not in {c["vkey"] for c in cosigned}],
        "final": final,
        "extended_by": extended_by,
    }


def checkpoint_panels(checkpoints) -> list[dict]:
    """For a page showing checkpoints: each one's note with its cosignatures, and its finality."""
    return [{"size": c.size, "note": cosigned_note(c), "w": finality(c)} for c in checkpoints]
