"""RFC 3161 time-stamps on checkpoints.

A checkpoint proves what the log held; a time-stamp token from an independent
time-stamp authority (TSA) proves *when*: the TSA signs the SHA-256 of the
checkpoint's signed text together with its own clock's time. Without one, the
times in the log rest on the server's clock (and on its witnesses).

What is stamped: the checkpoint body, i.e. the signed note's text up to the
blank line (``<origin>\\n<size>\\n<base64 root>\\n``), as UTF-8 bytes. Not the
whole note: the body is what names the tree, and it stays the same when
signatures or witness cosignatures are added to the note, so one token
covers every form of the checkpoint an auditor may hold. It is also the
exact file the README's by-hand checkpoint check writes (``body.txt``).

The top of this module is pure (``cryptography`` and ``rfc3161-client``, no
Django): the offline verifier imports ``verify_token``. The functions that
touch the database import Django lazily, below.

ASN.1 is left to ``rfc3161-client``. It parses time-stamp *responses* only,
so a stored *token* is checked by wrapping it in the smallest granted
response (``_response_for_token``): one SEQUENCE header and a fixed status.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    Verifier,
    VerifierBuilder,
    decode_timestamp_response,
)

logger = logging.getLogger(__name__)

QUERY_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
# A reply is a few kB (token plus the TSA's certificates); anything far larger
# is not a time-stamp reply and is not read into memory.
MAX_REPLY_BYTES = 256 * 1024
# PKIStatusInfo { status granted(0) }, DER: what _response_for_token puts in front of a token.
_GRANTED_STATUS_DER = bytes.fromhex("3003020100")


# --- pure: what is stamped, and checking a token ---------------------------


def checkpoint_body(note: str) -> bytes:
    """The signed text of a C2SP signed note (up to the blank line), as the bytes that are stamped.

    Split as ``signing.verify_note`` splits it: the text ends at the last
    blank line, and keeps its final newline.
    """
    text, sep, _signatures = note.rpartition("\n\n")
    if not sep or not text:
        raise ValueError("malformed signed note: no blank line before the signatures")
    return (text + "\n").encode("utf-8")


def message_digest(message: bytes) -> str:
    """``sha256:<hex>`` of the stamped bytes, as shown next to the tokens."""
    return "sha256:" + hashlib.sha256(message).hexdigest()


def load_ca_certs(ca_certs_pem: bytes | str) -> list[x509.Certificate]:
    """Every certificate in one or more concatenated PEM blocks."""
    if isinstance(ca_certs_pem, str):
        ca_certs_pem = ca_certs_pem.encode("ascii")
    try:
        certs = x509.load_pem_x509_certificates(ca_certs_pem)
    except ValueError as exc:
        raise ValueError(f"TSA CA certificates: not PEM certificates ({exc})") from None
    if not certs:
        raise ValueError("TSA CA certificates: none given")
    return certs


def _verifier(ca_certs: list[x509.Certificate], builder: VerifierBuilder | None = None) -> Verifier:
    builder = builder or VerifierBuilder()
    for cert in ca_certs:
        builder = builder.add_root_certificate(cert)
    return builder.build()


def _der_sequence(body: bytes) -> bytes:
    """A DER SEQUENCE around ``body`` (definite length, short or long form)."""
    size = len(body)
    if size < 0x80:
        return b"\x30" + bytes([size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + body


def _response_for_token(token_der: bytes) -> bytes:
    """TimeStampResp { status granted, timeStampToken } around a stored token.

    rfc3161-client verifies responses, not bare tokens; the status added
    here is not signed by anyone and carries no meaning: everything checked
    (imprint, time, signature, certificates) is inside the token.
    """
    return _der_sequence(_GRANTED_STATUS_DER + token_der)


def _check(
    response: TimeStampResponse,
    message: bytes,
    ca_certs: list[x509.Certificate],
    builder: VerifierBuilder | None = None,
) -> dt.datetime:
    """Verify a parsed response over ``message``; return its genTime. Raises ValueError."""
    if response.status != PKIStatus.GRANTED:
        reason = "; ".join(response.status_string) or "no reason given"
        raise ValueError(f"time-stamp not granted (status {response.status}: {reason})")
    try:
        # Checks, in the library: the CMS signature; the signer's chain up to
        # one of ``ca_certs``, valid at genTime; the signer certificate's
        # critical extendedKeyUsage timeStamping; the nonce and policy when
        # ``builder`` came from our request; the message imprint.
        _verifier(ca_certs, builder).verify_message(response, message)
    except (VerificationError, ValueError) as exc:  # malformed inner parts raise ValueError
        raise ValueError(f"time-stamp token refused: {exc}") from None
    return response.tst_info.gen_time.astimezone(dt.UTC)


def verify_token(token_der: bytes, message_bytes: bytes, ca_certs_pem: bytes | str) -> dt.datetime:
    """Check an RFC 3161 token over ``message_bytes``; return the time it states (UTC).

    ``ca_certs_pem``: the certificates the TSA must chain to (PEM, one or
    more). Raises ValueError naming the reason when the token is malformed,
    is over other bytes, or was not signed by a TSA under those certificates.
    Pure, so the offline verifier and ``verify_log`` can call it.
    """
    ca_certs = load_ca_certs(ca_certs_pem)
    token_der = bytes(token_der)
    try:
        response = decode_timestamp_response(_response_for_token(token_der))
        # A token with trailing or re-encoded bytes is not the token it claims to be.
        if not token_der or response.time_stamp_token() != token_der:
            raise ValueError("not one DER TimeStampToken")
        response.tst_info  # noqa: B018 - parsed here so a token without one is named as malformed
    except ValueError as exc:
        raise ValueError(f"not an RFC 3161 time-stamp token: {exc}") from None
    return _check(response, message_bytes, ca_certs)


# --- talking to a TSA (no Django either) -----------------------------------


class TSAError(Exception):
    """A TSA could not be reached or its reply was refused; the stamp waits for the next run."""


def request_token(
    url: str, message: bytes, ca_certs_pem: bytes | str, timeout: float
) -> tuple[bytes, dt.datetime]:
    """Ask the TSA at ``url`` to stamp SHA-256(``message``); return (DER token, genTime).

    The request carries a fresh random nonce (so an old reply cannot be
    replayed to us) and certReq (so the token holds the TSA certificate an
    auditor needs). The reply is verified before it is returned.
    """
    if not url.startswith(("http://", "https://")):
        raise TSAError(f"{url}: not an http(s) URL")
    ca_certs = load_ca_certs(ca_certs_pem)
    query = (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    http_request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=query.as_bytes(),
        method="POST",
        headers={"Content-Type": QUERY_CONTENT_TYPE, "Accept": REPLY_CONTENT_TYPE},
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as reply:  # noqa: S310
            body = reply.read(MAX_REPLY_BYTES + 1)
    # Refused, timed out, an HTTP error status, a connection cut mid-reply.
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise TSAError(f"{url}: {exc}") from None
    if len(body) > MAX_REPLY_BYTES:
        raise TSAError(f"{url}: reply larger than {MAX_REPLY_BYTES} bytes")
    try:
        response = decode_timestamp_response(body)
    except ValueError as exc:
        raise TSAError(f"{url}: not a time-stamp reply ({exc})") from None
    try:
        # from_request: the reply must echo our nonce (and policy, if we asked one).
        gen_time = _check(response, message, ca_certs, VerifierBuilder.from_request(query))
        token = bytes(response.time_stamp_token())
        # What is stored must verify on its own, as an auditor will check it.
        verify_token(token, message, ca_certs_pem)
    except ValueError as exc:
        raise TSAError(f"{url}: {exc}") from None
    return token, gen_time


# --- the server side: settings, storage, the API and export ----------------


@dataclass(frozen=True)
class StampRun:
    """What one run did: the tokens it stored and the TSAs that failed (url -> reason)."""

    size: int | None
    stamped: list[str]
    failed: dict[str, str]


def configured_ca_pem() -> bytes:
    """The configured TSA CA certificates, concatenated (read when needed, not at import)."""
    from django.conf import settings

    return b"".join(path.read_bytes() + b"\n" for path in settings.CUSTODY_TSA_CA_FILES)


def stamp_newest_checkpoint() -> StampRun:
    """Stamp the newest checkpoint at every configured TSA that has not stamped it yet.

    Each TSA is asked outside any transaction (a slow TSA holds no lock) and
    on its own: one TSA down delays its own stamp only. Intake never waits
    for this: it runs in the worker, from the beat schedule.
    """
    from django.conf import settings

    from .models import Checkpoint

    checkpoint = Checkpoint.objects.order_by("-size").first()
    if not settings.CUSTODY_TSA_URLS or checkpoint is None:
        return StampRun(size=None, stamped=[], failed={})
    return stamp(checkpoint)


def stamp_for_export(checkpoint) -> StampRun | None:
    """Stamp an export's own checkpoint right away, when TSAs are configured (a TSA down only delays)."""
    from django.conf import settings

    if not settings.CUSTODY_TSA_URLS:
        return None
    return stamp(checkpoint)


def stamp(checkpoint) -> StampRun:
    """Stamp ``checkpoint`` at every configured TSA that has not stamped it yet."""
    from django.conf import settings
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from .models import Timestamp

    urls = settings.CUSTODY_TSA_URLS
    done = set(checkpoint.timestamps.values_list("tsa_url", flat=True))
    wanted = [url for url in urls if url not in done]
    if not wanted:
        return StampRun(size=checkpoint.size, stamped=[], failed={})
    message = checkpoint_body(checkpoint.note)
    ca_pem = configured_ca_pem()
    stamped, failed = [], {}
    for url in wanted:
        try:
            token, gen_time = request_token(url, message, ca_pem, settings.CUSTODY_TSA_TIMEOUT)
        except TSAError as exc:
            logger.warning("time-stamp of checkpoint %s delayed: %s", checkpoint.size, exc)
            failed[url] = str(exc)
            continue
        try:
            with transaction.atomic():
                Timestamp.objects.create(
                    checkpoint=checkpoint,
                    tsa_url=url,
                    token=token,
                    gen_time=gen_time,
                    created_at=timezone.now(),
                )
        except IntegrityError:  # another worker stored this TSA's token first
            continue
        stamped.append(url)
    return StampRun(size=checkpoint.size, stamped=stamped, failed=failed)


def tokens_for(size: int) -> list[dict]:
    """The tokens stored for the checkpoint of ``size``, for the API and export bundles.

    Each: ``tsa_url``, ``gen_time`` (RFC 3339, a copy of the time inside the
    token), ``token`` (base64 of the DER TimeStampToken). The stamped bytes
    are the checkpoint body (``checkpoint_body(note)``). Empty if none.
    """
    from .log import format_time
    from .models import Timestamp

    rows = Timestamp.objects.filter(checkpoint_id=size).order_by("gen_time", "tsa_url")
    return [
        {
            "tsa_url": row.tsa_url,
            "gen_time": format_time(row.gen_time),
            "token": base64.b64encode(bytes(row.token)).decode("ascii"),
        }
        for row in rows
    ]
