"""Every state change of the custody app: check permission, change state, log; one transaction.

Views, the API, the admin, tasks and management commands call these
functions; none of them writes custody models directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import unicodedata
import uuid

import magic
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import cosign, keys, limits, log, projection, signing, trustroot
from .hashing import is_sha256_hex
from .models import (
    ApiToken,
    Blob,
    Case,
    Evidence,
    LogEntry,
    LogHead,
    Membership,
    Role,
    SigningKey,
    Transfer,
    TrustRoot,
    User,
)
from .permissions import Forbidden, require_investigator_or_admin, require_write, visible_cases
from .storage import BlobError, BlobStoreUnavailable, blob_store, hash_stored

INTAKE_PREDICATE_TYPE = projection.INTAKE_PREDICATE_TYPE
MAX_NAME_LENGTH = 255


class ServiceError(Exception):
    """Refused input: ``status`` is the HTTP status a transport should answer with."""

    def __init__(self, detail: str, status: int = 400):
        super().__init__(detail)
        self.detail = detail
        self.status = status


# Seconds a client is told to wait (Retry-After) when the blob store is down.
STORE_RETRY_AFTER = 30


def store_unavailable(exc: BlobStoreUnavailable, outcome: str) -> ServiceError:
    """The 503 for a blob store that did not answer; ``outcome`` says what (not) happened."""
    error = ServiceError(f"the evidence store is unavailable, {outcome}; try again later ({exc})", status=503)
    error.retry_after = STORE_RETRY_AFTER
    return error


# --- accounts and cases -----------------------------------------------------


def _user_ref(user: User) -> dict:
    return {"id": user.pk, "username": user.get_username()}


@transaction.atomic
def create_user(
    *,
    actor: User | None,
    username: str,
    password: str,
    role: str,
    email: str = "",
    cases: list[Case] = (),
    client: str | None = None,
) -> User:
    """Create an account with a role and case memberships (admins, or the CLI with actor=None)."""
    if actor is not None and not actor.is_custody_admin:
        raise Forbidden("only administrators create accounts")
    if role not in Role.values:
        raise ServiceError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    if User.objects.filter(username=username).exists():
        raise ServiceError(f"user {username!r} already exists", status=409)
    # The row is made first, inactive, to learn its database id; the entry
    # then states every custody fact of the account and the projection
    # writes them over it. The password hash is not a custody fact.
    user = User(username=username, is_active=False)
    user.set_password(password)
    user.save()
    entry = log.append(
        "user.created",
        actor=actor,
        client=client,
        details={"user": _user_ref(user), "role": role, "email": email},
    )
    projection.apply(entry, reserved=frozenset({("user", (user.pk,))}))
    for case in cases:
        _add_membership(actor, case, user, client)
    user.refresh_from_db()
    return user


@transaction.atomic
def set_role(*, actor: User | None, user: User, role: str, client: str | None = None) -> User:
    if actor is not None and not actor.is_custody_admin:
        raise Forbidden("only administrators change roles")
    if role not in Role.values:
        raise ServiceError(f"unknown role {role!r}")
    entry = log.append(
        "user.role_changed",
        actor=actor,
        client=client,
        details={"user": _user_ref(user), "from": user.role, "to": role},
    )
    projection.apply(entry)
    user.refresh_from_db()
    return user


@transaction.atomic
def set_active(*, actor: User | None, user: User, active: bool, client: str | None = None) -> User:
    """Deactivate an account (it keeps its history and can no longer sign in), or reactivate it."""
    if actor is not None and not actor.is_custody_admin:
        raise Forbidden("only administrators activate or deactivate accounts")
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active == active:
        return user
    entry = log.append(
        "user.activated" if active else "user.deactivated",
        actor=actor,
        client=client,
        details={"user": _user_ref(user)},
    )
    projection.apply(entry)
    user.refresh_from_db()
    return user


@transaction.atomic
def create_case(
    *, actor: User, reference: str, title: str, description: str = "", client: str | None = None
) -> Case:
    require_investigator_or_admin(actor)
    reference, title = reference.strip(), title.strip()
    if not reference or not title:
        raise ServiceError("a case needs a reference and a title")
    if visible_cases(actor).filter(reference=reference).exists():
        # Unique among the cases the creator can see, so that the answer
        # never tells whether a case they may not see uses the reference.
        raise ServiceError(f"you already have a case with reference {reference!r}", status=409)
    case = Case(id=uuid.uuid4(), reference=reference)
    entry = log.append(
        "case.created",
        actor=actor,
        case=case,
        client=client,
        details={"title": title, "description": description},
    )
    projection.apply(entry)
    case = Case.objects.get(pk=case.pk)
    _add_membership(actor, case, actor, client)
    return case


def _add_membership(actor, case: Case, user: User, client) -> None:
    if Membership.objects.filter(case=case, user=user).exists():
        return
    entry = log.append(
        "case.member_added",
        actor=actor,
        case=case,
        client=client,
        details={"user": _user_ref(user), "role": user.role},
    )
    projection.apply(entry)


@transaction.atomic
def add_member(*, actor: User | None, case: Case, user: User, client: str | None = None) -> None:
    """Add a user to a case: administrators, or investigators who are members."""
    if actor is not None:
        require_write(actor, case)
    _add_membership(actor, case, user, client)


@transaction.atomic
def remove_member(*, actor: User | None, case: Case, user: User, client: str | None = None) -> None:
    if actor is not None and not actor.is_custody_admin:
        raise Forbidden("only administrators remove case members")
    if not Membership.objects.filter(case=case, user=user).exists():
        return
    entry = log.append(
        "case.member_removed",
        actor=actor,
        case=case,
        client=client,
        details={"user": _user_ref(user)},
    )
    projection.apply(entry)


# --- tokens -----------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def issue_token(*, user: User, label: str = "", client: str | None = None) -> tuple[ApiToken, str]:
    """Create a token; returns (row, token). The token itself is never stored.

    The entry records the token's SHA-256 (never the token): a token row
    that no entry accounts for is a forgery ``verify_log`` reports.
    """
    token = "cst_" + secrets.token_urlsafe(32)
    digest = token_digest(token)
    entry = log.append(
        "token.issued",
        actor=user,
        client=client,
        details={"token": token[:10], "digest": digest, "label": label[:100]},
    )
    projection.apply(entry)
    return ApiToken.objects.get(digest=digest), token


@transaction.atomic
def revoke_token(*, actor: User | None, token: ApiToken, client: str | None = None) -> None:
    if actor is not None and actor != token.user and not actor.is_custody_admin:
        raise Forbidden("you may revoke only your own tokens")
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return
    entry = log.append(
        "token.revoked",
        actor=actor,
        client=client,
        details={"token": token.prefix, "digest": token.digest, "user": _user_ref(token.user)},
    )
    projection.apply(entry)


# --- signing keys -----------------------------------------------------------


@transaction.atomic
def ensure_signing_keys(*, actor: User | None = None) -> list[SigningKey]:
    """Create the missing active keys (first run). Returns the keys created.

    A key exists for the custody record only through its ``key.added`` entry,
    which carries the public key: ``verify_log`` and the offline verifier
    take keys from the log, never from the table alone.
    """
    created = []
    for purpose in SigningKey.Purpose.values:
        # Serialise through the log head: two processes starting at once must
        # not both create a key for the same purpose.
        LogHead.objects.select_for_update().get(pk=1)
        if SigningKey.objects.filter(purpose=purpose, valid_until__isnull=True).exists():
            continue
        keyid, private = keys.generate_key_file()
        name = keys.key_name(purpose)
        details = {
            "keyid": keyid,
            "purpose": purpose,
            "name": name,
            "public_key_pem": signing.public_key_pem(private.public_key()),
        }
        if purpose == SigningKey.Purpose.LOG:
            details["vkey"] = signing.note_verifier_key(name, private.public_key())
        entry = log.append("key.added", actor=actor, details=details)
        projection.apply(entry)
        created.append(SigningKey.objects.get(pk=keyid))
    if created:
        update_trust_root(actor=actor)
    return created


def _keys_as_logged() -> dict[str, dict]:
    """Every signing key as the log's key entries state it: keyid -> the fields its row must have.

    An entry that carries a signature must be one this server signed (log.signed_here).
    """
    stated: dict[str, dict] = {}
    for row in LogEntry.objects.filter(action__in=("key.added", "key.retired")).order_by("index"):
        if bytes(row.signature) and not log.signed_here(row):
            raise ServiceError(
                f"log entry {row.index} ({row.action}) is not one this server signed: no trust root is "
                "published (run verify_log)",
                409,
            )
        for change in projection.changes(row.decoded, settings.CUSTODY_LOG_ORIGIN):
            if change.op == "insert":
                stated[change.key[0]] = dict(change.fields)
            elif change.key[0] in stated:
                stated[change.key[0]].update(change.fields)
    return stated


def trust_root_document(version: int, previous: TrustRoot | None) -> dict:
    """What the trust root says now: keys from the custody record, witnesses and TSAs from the settings.

    The keys are the signing-key table's, which must say what the log's signed key entries say:
    a key added, or a validity stretched, in the table alone would otherwise be signed into the
    root every outside verifier pins.
    """
    rows = SigningKey.objects.order_by("purpose", "valid_from", "keyid")
    stated = _keys_as_logged()
    key_list = []
    for row in rows:
        item = {
            "keyid": row.keyid,
            "purpose": row.purpose,
            "name": row.name,
            "public_key_pem": row.public_key_pem,
            "valid_from": log.format_time(row.valid_from),
            "valid_until": log.format_time(row.valid_until) if row.valid_until else None,
        }
        logged = stated.pop(row.keyid, None)
        if logged is None or any(item[field] != logged[field] for field in logged):
            raise ServiceError(
                f"signing key {row.keyid[:16]}: its row does not say what the log's key entries say "
                f"({logged or 'no key.added entry'}); no trust root is published (run verify_log)",
                409,
            )
        if row.purpose == SigningKey.Purpose.LOG:
            item["vkey"] = signing.note_verifier_key(
                row.name, signing.load_public_key_pem(row.public_key_pem)
            )
        key_list.append(item)
    if stated:
        raise ServiceError(
            f"signing key(s) {', '.join(k[:16] for k in sorted(stated))} added in the log are missing from the "
            "table; no trust root is published (run verify_log)",
            409,
        )
    witnesses = [
        {"name": cosign.parse_verifier_key(vkey).name, "vkey": vkey, "url": url}
        for url, vkey in settings.CUSTODY_WITNESSES
    ]
    return {
        "_type": trustroot.DOCUMENT_TYPE,
        "version": version,
        "origin": settings.CUSTODY_LOG_ORIGIN,
        "issued_at": log.format_time(timezone.now()),
        "previous": f"sha256:{trustroot.fingerprint(previous.envelope)}" if previous else None,
        "keys": key_list,
        "witnesses": witnesses,
        "witness_quorum": settings.CUSTODY_WITNESS_QUORUM if witnesses else 0,
        "tsa": {
            "urls": list(settings.CUSTODY_TSA_URLS),
            "certificates": [path.read_text() for path in settings.CUSTODY_TSA_CA_FILES],
        },
    }


@transaction.atomic
def update_trust_root(*, actor: User | None = None, client: str | None = None) -> TrustRoot:
    """Publish a new trust root version if the keys, witnesses or TSAs changed; return the newest.

    The new version is signed by every key active in the version it replaces
    and by every key active in itself (custody/trustroot.py), and recorded in
    the log with its whole envelope.
    """
    if actor is not None and not actor.is_custody_admin:
        raise Forbidden("only administrators change the trust root")
    LogHead.objects.select_for_update().get(pk=1)  # one publisher at a time
    previous = TrustRoot.objects.order_by("-version").first()
    doc = trust_root_document(previous.version + 1 if previous else 1, previous)
    if previous is not None:
        old = json.loads(signing.b64decode(previous.envelope["payload"]))
        if trustroot.same_content(old, doc):
            return previous
        signer_ids = {k["keyid"] for k in old["keys"] if k.get("valid_until") is None}
    else:
        signer_ids = set()
    signer_ids |= {k["keyid"] for k in doc["keys"] if k.get("valid_until") is None}
    envelope = trustroot.sign(doc, [keys.load_private_key(keyid) for keyid in sorted(signer_ids)])
    entry = log.append(
        "trust_root.published",
        actor=actor,
        client=client,
        details={
            "version": doc["version"],
            "fingerprint": trustroot.fingerprint(envelope),
            "envelope": envelope,
        },
    )
    projection.apply(entry)
    return TrustRoot.objects.get(pk=doc["version"])


# --- evidence ---------------------------------------------------------------


def normalize_declared_sha256(value: str | None) -> str:
    """A client's declared SHA-256 as lowercase hex ("" when none); refuses anything else."""
    declared = (value or "").strip().lower().removeprefix("sha256:")
    if declared and not is_sha256_hex(declared):
        raise ServiceError("sha256 must be 64 hexadecimal characters")
    return declared


def sanitize_name(name: str | None) -> str:
    """The client's file name as safe metadata: never used as a path.

    Django's multipart parser has already dropped directory parts and
    non-printable characters; this also covers names from other transports.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("/", "_").replace("\\", "_")
    name = "".join(c for c in name if c.isprintable()).strip()
    if name in {"", ".", ".."}:
        return "unnamed"
    if len(name) > MAX_NAME_LENGTH:
        stem, ext = os.path.splitext(name)
        ext = ext[:16]
        name = stem[: MAX_NAME_LENGTH - len(ext) - 1] + "\u2026" + ext
    return name


def detect_media_type(path: str) -> str:
    """From content (libmagic reads the first bytes), never from the client."""
    media_type = magic.from_file(path, mime=True)
    return "application/x-empty" if media_type == "inode/x-empty" else media_type


def receive_evidence(
    *,
    actor: User,
    case: Case,
    upload,
    description: str = "",
    source: str = "",
    declared_sha256: str | None = None,
    client: str | None = None,
    on_recorded=None,
) -> Evidence:
    """Store an uploaded file as evidence, log the intake and sign a receipt.

    ``upload`` is a HashedUploadedFile: its digests were computed while it was
    written, so the bytes are not read again here. ``on_recorded(evidence)``,
    when given, runs inside the intake's transaction (a resumable upload marks
    itself finished there, so a crash cannot leave it to be received twice).
    """
    require_write(actor, case)
    digests = getattr(upload, "digests", None)
    if not digests:
        raise ServiceError("upload was not hashed on intake (misconfigured FILE_UPLOAD_HANDLERS)", 500)
    declared = normalize_declared_sha256(declared_sha256)
    if declared and declared != digests["sha256"]:
        # Nothing is kept: the temporary file goes with the request.
        upload.close()
        raise ServiceError(
            f"declared sha256 {declared} does not match the received bytes "
            f"(sha256 {digests['sha256']}, {upload.size} bytes); nothing was stored",
            status=422,
        )
    resumable = getattr(upload, "resumable_id", None)  # its own length is not counted twice
    try:
        limits.check_size(upload.size)
        limits.check_case_quota(case, upload.size, exclude_upload=resumable)
    except limits.UploadRefused as exc:
        upload.close()
        raise ServiceError(exc.detail, status=exc.status) from None
    path = upload.temporary_file_path()
    media_type = detect_media_type(path)
    name = sanitize_name(upload.name)
    # The blob is written before the transaction: it is content-addressed,
    # so a failed transaction leaves at most an unreferenced copy of bytes
    # that were received, never a record without its bytes.
    try:
        blob_store().put_file(path, digests["sha256"], upload.size)
    except BlobStoreUnavailable as exc:
        # Before the transaction: no evidence, no log entry, no receipt.
        upload.close()
        raise store_unavailable(exc, "nothing was stored") from None
    except BlobError as exc:  # a store that cannot keep evidence safely (see check_blob_store)
        upload.close()
        raise ServiceError(f"the evidence store refused the upload, nothing was stored: {exc}", 500) from None
    except OSError as exc:
        if exc.errno not in limits.DISK_FULL_ERRNOS:
            raise
        upload.close()  # the store removed its partial copy; the temporary file goes too
        raise ServiceError(limits.DISK_FULL_DETAIL, status=507) from None
    # The receipt is signed under the log head's lock (it names the entry's
    # index); the key is loaded before it, as its first load in a process
    # runs scrypt (~0.5 s) and would hold up every other appender.
    intake_row, intake_key = keys.active_private_key(SigningKey.Purpose.INTAKE)
    origin = settings.CUSTODY_LOG_ORIGIN

    def sign_receipt(entry: dict) -> dict:
        # The receipt states the entry's index and time, so it is signed here,
        # under the log lock; its signature goes into the entry, which makes
        # the whole receipt derivable from the log (projection.receipt_envelope).
        statement = projection.receipt_statement({**entry, "details": details}, origin)
        envelope = signing.sign_statement(statement, intake_key)
        return {"receipt": {"keyid": intake_row.keyid, "sig": envelope["signatures"][0]["sig"]}}

    # The receipt carries the digests computed for this upload, never those
    # of a stored record.
    details = {
        "original_name": name,
        "size": upload.size,
        "media_type": media_type,
        "sha1": digests["sha1"],
        "md5": digests["md5"],
        "source": source,
        "description": description,
    }
    with transaction.atomic():
        if settings.CUSTODY_CASE_QUOTA_BYTES:
            # Again under the case row's lock: two intakes into one case must
            # not both fit in the quota that only one of them fits in.
            Case.objects.select_for_update().filter(pk=case.pk).first()
            try:
                limits.check_case_quota(case, upload.size, exclude_upload=resumable)
            except limits.UploadRefused as exc:
                raise ServiceError(exc.detail, status=exc.status) from None
        known = Blob.objects.filter(sha256=digests["sha256"]).first()
        if known is not None and (known.sha1, known.md5, known.size) != (
            digests["sha1"],
            digests["md5"],
            upload.size,
        ):
            # Same SHA-256, other SHA-1/MD5/size: the stored record was changed
            # behind the log's back (or SHA-256 collided). Keep nothing new.
            raise ServiceError(
                f"the stored record of blob {digests['sha256']} disagrees with the received bytes "
                "(SHA-1, MD5 or size); intake refused, run verify_log",
                status=409,
            )
        evidence = Evidence(id=uuid.uuid4(), blob_id=digests["sha256"])
        entry = log.append(
            "evidence.received",
            actor=actor,
            case=case,
            evidence=evidence,
            client=client,
            details=details,
            seal=sign_receipt,
        )
        projection.apply(entry)
        evidence = Evidence.objects.select_related("case", "blob", "submitted_by", "custodian").get(
            pk=evidence.pk
        )
        if on_recorded is not None:
            on_recorded(evidence)
    return evidence


@transaction.atomic
def record_view(*, actor: User, evidence: Evidence, client: str | None = None) -> None:
    log.append("evidence.viewed", actor=actor, case=evidence.case, evidence=evidence, client=client)


@transaction.atomic
def open_for_download(*, actor: User, evidence: Evidence, reason: str = "", client: str | None = None):
    """Log the download and return an open binary file of the evidence bytes."""
    reason = (reason or "").strip()[:1000]
    log.append(
        "evidence.downloaded",
        actor=actor,
        case=evidence.case,
        evidence=evidence,
        client=client,
        reason=reason,
    )
    try:
        return blob_store().open(evidence.blob_id)
    except BlobStoreUnavailable as exc:
        # Raised inside the transaction: the download is not logged.
        raise store_unavailable(exc, "the download did not start") from None


def _store_unavailable_fixity(exc: BlobStoreUnavailable) -> dict:
    # Not "corrupt": the bytes could not be read, so they were not checked.
    return {"ok": False, "error": f"store unavailable, the stored bytes were not checked ({exc})"}


def check_fixity(*, evidence: Evidence, actor: User | None = None) -> bool:
    """Re-hash the stored bytes of one item and log the outcome. True when intact."""
    # Hash outside the transaction: on SQLite a transaction holds the write
    # lock from its start, and hashing gigabytes must not block intake.
    blob = evidence.blob
    try:
        # What the store returns now, re-hashed (for S3, the object's bytes as served).
        digests, size = hash_stored(blob.sha256)
        ok = (digests["sha256"], digests["sha1"], digests["md5"], size) == (
            blob.sha256,
            blob.sha1,
            blob.md5,
            blob.size,
        )
        details = {"ok": ok, "sha256": digests["sha256"], "size": size}
    except FileNotFoundError:
        ok, details = False, {"ok": False, "error": "blob file is missing"}
    except BlobStoreUnavailable as exc:
        ok, details = False, _store_unavailable_fixity(exc)
    with transaction.atomic():
        log.append("fixity.checked", actor=actor, case=evidence.case, evidence=evidence, details=details)
    return ok


# --- custody transfers ------------------------------------------------------


def _fixity(evidence: Evidence) -> dict:
    """Re-hash the stored bytes before a handover step (outside any transaction)."""
    try:
        digests, size = hash_stored(evidence.blob_id)
    except FileNotFoundError:
        return {"ok": False, "error": "blob file is missing"}
    except BlobStoreUnavailable as exc:
        raise store_unavailable(
            exc, "the bytes could not be re-checked and nothing was handed over"
        ) from None
    ok = digests["sha256"] == evidence.blob_id and size == evidence.blob.size
    return {"ok": ok, "sha256": digests["sha256"], "size": size}


def _refuse_on_bad_fixity(evidence: Evidence, fixity: dict, actor, client) -> None:
    if fixity["ok"]:
        return
    with transaction.atomic():
        log.append(
            "fixity.checked",
            actor=actor,
            case=evidence.case,
            evidence=evidence,
            client=client,
            details=fixity,
        )
    raise ServiceError(
        "the stored bytes no longer match the evidence's SHA-256; the handover is refused "
        "and the failure is logged (run verify_log)",
        status=409,
    )


def _cannot_take_custody(username: str) -> ServiceError:
    # The same words whether the user is unknown, inactive, an auditor or
    # outside the case: the answer must not tell which user names exist.
    return ServiceError(
        f"{username} cannot take custody: the receiver must be an active investigator or "
        "administrator who is a member of the case"
    )


def release_custody(
    *,
    actor: User,
    evidence: Evidence,
    to_user: User | str,
    purpose: str,
    location: str,
    client: str | None = None,
) -> Transfer:
    """First step of a handover: the current custodian releases the item to ``to_user``.

    ``to_user`` may be a user name no account has (as a client gave it): it
    is refused like a user who cannot take custody, after the actor's own checks.
    """
    from .permissions import can_write_case

    require_write(actor, evidence.case)
    if evidence.custodian_id != actor.pk and not actor.is_custody_admin:
        raise Forbidden(f"only the current custodian ({evidence.custodian.username}) can release this item")
    if isinstance(to_user, str):
        raise _cannot_take_custody(to_user)
    if to_user.pk == evidence.custodian_id:
        raise ServiceError(f"{to_user.username} already has custody")
    if not to_user.is_active or not can_write_case(to_user, evidence.case):
        raise _cannot_take_custody(to_user.username)
    purpose, location = purpose.strip(), location.strip()
    if not purpose or not location:
        raise ServiceError("a handover needs a purpose and a location")
    fixity = _fixity(evidence)
    _refuse_on_bad_fixity(evidence, fixity, actor, client)
    with transaction.atomic():
        locked = Evidence.objects.select_for_update().select_related("custodian").get(pk=evidence.pk)
        _require_logged_custodian(locked)
        # Again under the row lock: another handover may have been accepted
        # since the check above, and only the custodian of now may release.
        if locked.custodian_id != actor.pk and not actor.is_custody_admin:
            raise Forbidden(f"only the current custodian ({locked.custodian.username}) can release this item")
        if to_user.pk == locked.custodian_id:
            raise ServiceError(f"{to_user.username} already has custody")
        if Transfer.objects.filter(evidence=locked, status=Transfer.Status.PENDING).exists():
            raise ServiceError("a handover of this item is already pending", status=409)
        transfer_id = uuid.uuid4()
        entry = log.append(
            "custody.released",
            actor=actor,
            case=evidence.case,
            evidence=evidence,
            client=client,
            details={
                "transfer": str(transfer_id),
                "from": _user_ref(locked.custodian),
                "to": _user_ref(to_user),
                "purpose": purpose,
                "location": location,
                "fixity": fixity,
            },
        )
        projection.apply(entry)
        return Transfer.objects.get(pk=transfer_id)


def _require_logged_custodian(evidence: Evidence) -> None:
    """Custody moves only from the custodian the log's signed entries give the item (who received
    it, or the receiver of its latest accepted handover), not from whoever the table names."""
    row = (
        LogEntry.objects.filter(evidence=evidence, action__in=("evidence.received", "custody.accepted"))
        .order_by("-index")
        .first()
    )
    entry = log.signed_entry(row)
    logged = None
    if entry:
        for change in projection.changes(entry, settings.CUSTODY_LOG_ORIGIN):
            if change.table == "evidence" and "custodian_id" in change.fields:
                logged = change.fields["custodian_id"]
    if logged is None or logged != evidence.custodian_id:
        raise ServiceError(
            f"the item's custodian in the database is not the one its signed log entries give it (user "
            f"{logged}): no handover until that is resolved (run verify_log)",
            status=409,
        )


def _require_logged_release(transfer: Transfer) -> None:
    """A handover is decided only if its release is a signed entry of this item, sender and receiver."""
    entry = log.signed_entry(LogEntry.objects.filter(index=transfer.release_log_index).first())
    details = entry.get("details") or {}
    if (
        entry.get("action") != "custody.released"
        or details.get("transfer") != str(transfer.pk)
        or (entry.get("evidence") or {}).get("id") != str(transfer.evidence_id)
        or (details.get("from") or {}).get("id") != transfer.from_user_id
        or (details.get("to") or {}).get("id") != transfer.to_user_id
    ):
        raise ServiceError(
            "this handover has no signed release entry of this item, sender and receiver: it cannot be "
            "decided (run verify_log)",
            status=409,
        )


def decide_transfer(
    *, actor: User, transfer: Transfer, accept: bool, note: str = "", client: str | None = None
) -> Transfer:
    """Second step: the receiver accepts (becomes custodian) or refuses (custody stays)."""
    if actor.pk != transfer.to_user_id:
        raise Forbidden("only the receiver can accept or refuse this handover")
    if transfer.status != Transfer.Status.PENDING:
        raise ServiceError(f"this handover is already {transfer.status}", status=409)
    evidence = transfer.evidence
    fixity = _fixity(evidence) if accept else None
    if accept:
        _refuse_on_bad_fixity(evidence, fixity, actor, client)
    with transaction.atomic():
        transfer = Transfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.status != Transfer.Status.PENDING:
            raise ServiceError(f"this handover is already {transfer.status}", status=409)
        locked = Evidence.objects.select_for_update().get(pk=evidence.pk)
        _require_logged_custodian(locked)
        _require_logged_release(transfer)
        if accept and locked.custodian_id != transfer.from_user_id:
            # Custody is not where the release left it: accepting would take
            # the item from someone who never released it.
            raise ServiceError("the item's custodian changed since this handover was released", status=409)
        details = {
            "transfer": str(transfer.pk),
            "release_entry": transfer.release_log_index,
            "from": _user_ref(transfer.from_user),
            "to": _user_ref(actor),
            "purpose": transfer.purpose,
            "location": transfer.location,
        }
        if fixity is not None:
            details["fixity"] = fixity
        entry = log.append(
            "custody.accepted" if accept else "custody.refused",
            actor=actor,
            case=locked.case,
            evidence=locked,
            client=client,
            reason=note.strip()[:1000],
            details=details,
        )
        projection.apply(entry)
        return Transfer.objects.get(pk=transfer.pk)


@transaction.atomic
def rotate_signing_key(*, actor: User | None, purpose: str, client: str | None = None) -> SigningKey:
    """Retire the active key of ``purpose`` and create its successor; both are log entries.

    The retired key keeps its row (and file), with ``valid_until`` set, so
    signatures made before the rotation stay checkable.
    """
    if actor is not None and not actor.is_custody_admin:
        raise Forbidden("only administrators rotate signing keys")
    if purpose not in SigningKey.Purpose.values:
        raise ServiceError(f"unknown key purpose {purpose!r}")
    LogHead.objects.select_for_update().get(pk=1)
    old = SigningKey.objects.filter(purpose=purpose, valid_until__isnull=True).first()
    if old is not None:
        entry = log.append(
            "key.retired",
            actor=actor,
            client=client,
            details={"keyid": old.keyid, "purpose": purpose},
        )
        projection.apply(entry)
    created = ensure_signing_keys(actor=actor)  # also publishes the next trust root version
    new = next(row for row in created if row.purpose == purpose)
    if old is not None and purpose == SigningKey.Purpose.LOG:
        # Bridge: one checkpoint signed by both log keys, so a monitor or a
        # bundle that knows only the old key can step over to the new one.
        log.sign_checkpoint([old.keyid, new.keyid])
    return new
