"""The custody tables as a projection of the log: log entry -> row changes, in one place.

The log is the record. Every custody fact that a page, a report, an export or
a permission check reads (users and their roles, cases and members, tokens,
evidence, blobs, handovers, analyses and signed results, signing keys) is
written by ``apply`` from the entry that records it, and by nothing else.
The services call ``apply`` right after ``log.append`` in the same
transaction; ``manage.py rebuild_state`` replays the log through the same
``changes`` into an empty database; ``verify_log`` replays it into a scratch
store and compares every table with it, row by row. One function decides
what an entry means, so the three can never disagree.

``changes(entry)`` is pure: it reads only the decoded entry. Values are in
the entry's own terms (ids as strings or integers, times as RFC 3339
strings); stores convert them to columns.

Not projected, because they are not custody facts: password hashes, sessions,
a token's last use, an analysis's heartbeat, unfinished resumable uploads, and
the second factor's devices (the TOTP key, the recovery codes: credentials,
like password hashes). Whether an account has a second factor in force is a
custody fact (the account's ``second_factor`` column, written by the enrolment
and removal entries): a rebuilt account keeps the requirement, though not its
devices.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import signing

ENTRY_VERSION = 2
INTAKE_PREDICATE_TYPE = "urn:custody-server:intake-receipt:v1"


@dataclass(frozen=True)
class Change:
    """One row change. ``op``: insert (must not exist), update / delete (must exist), ensure (first wins)."""

    op: str
    table: str
    key: tuple
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    name: str
    model: str  # app_label.ModelName
    key: tuple[str, ...]  # columns that identify a row
    fields: tuple[str, ...]  # columns compared and written
    times: frozenset[str] = frozenset()
    label: str = ""


def _t(name, model, key, fields, label="") -> Table:
    times = frozenset(f for f in fields if f.endswith("_at") or f in ("valid_from", "valid_until"))
    return Table(name, model, tuple(key), tuple(fields), times, label or name)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        _t(
            "user",
            "custody.User",
            ["id"],
            ["username", "email", "role", "is_active", "is_staff", "is_superuser", "second_factor"],
        ),
        _t(
            "case",
            "custody.Case",
            ["id"],
            ["reference", "title", "description", "created_at", "created_by_id"],
        ),
        _t("membership", "custody.Membership", ["case_id", "user_id"], ["added_at"], "membership"),
        _t(
            "token",
            "custody.ApiToken",
            ["digest"],
            ["user_id", "prefix", "label", "created_at", "revoked_at"],
            "API token",
        ),
        _t(
            "key",
            "custody.SigningKey",
            ["keyid"],
            ["purpose", "name", "public_key_pem", "valid_from", "valid_until"],
        ),
        _t("blob", "custody.Blob", ["sha256"], ["sha1", "md5", "size", "stored_at"]),
        _t(
            "evidence",
            "custody.Evidence",
            ["id"],
            [
                "case_id",
                "blob_id",
                "original_name",
                "description",
                "source",
                "media_type",
                "submitted_by_id",
                "custodian_id",
                "received_at",
                "log_index",
                "receipt",
            ],
        ),
        _t(
            "transfer",
            "custody.Transfer",
            ["id"],
            [
                "evidence_id",
                "from_user_id",
                "to_user_id",
                "purpose",
                "location",
                "status",
                "released_at",
                "release_log_index",
                "decided_at",
                "decision_log_index",
                "decision_note",
            ],
            "handover",
        ),
        _t(
            "analysis",
            "forensics.Analysis",
            ["id"],
            [
                "evidence_id",
                "analyzer",
                "analyzer_version",
                "parameters",
                "status",
                "requested_by_id",
                "requested_at",
                "request_log_index",
                "started_at",
                "worker",
                "attempts",
                "finished_at",
                "error",
                "envelope",
                "statement_sha256",
                "result_log_index",
                "published_at",
                "publish_log_index",
            ],
        ),
        _t("artifact", "forensics.Artifact", ["analysis_id", "blob_id"], ["name", "media_type"]),
        _t("trust_root", "custody.TrustRoot", ["version"], ["envelope", "log_index"], "trust root version"),
    )
}


class ProjectionError(ValueError):
    """An entry that cannot be projected (malformed, or from an older entry version)."""


# --- what an entry means --------------------------------------------------------


def _id(ref: dict | None) -> Any:
    if not isinstance(ref, dict) or "id" not in ref:
        raise ProjectionError("entry lacks an id it needs")
    return ref["id"]


def admin_flags(role: str) -> dict[str, bool]:
    """Django's own flags follow the role: an administrator is staff and superuser, nobody else."""
    return {"is_staff": role == "admin", "is_superuser": role == "admin"}


def receipt_statement(entry: dict, origin: str) -> dict:
    """The intake receipt's in-toto statement, made from the intake entry alone.

    The receipt is signed while the entry is written (it names the entry's
    index and time), and its signature is part of the entry, so the whole
    receipt is derivable from the log.
    """
    d = entry["details"]
    evidence = entry["evidence"]
    return signing.in_toto_statement(
        subject=[
            {
                "name": d["original_name"],
                "digest": {"sha256": evidence["sha256"], "sha1": d["sha1"], "md5": d["md5"]},
            }
        ],
        predicate_type=INTAKE_PREDICATE_TYPE,
        predicate={
            "evidence": evidence["id"],
            "case": entry["case"],
            "original_name": d["original_name"],
            "size": d["size"],
            "media_type": d["media_type"],
            "submitter": entry["actor"],
            "source": d["source"],
            "description": d["description"],
            "received_at": entry["time"],
            "log": {"origin": origin, "index": entry["index"]},
        },
    )


def receipt_envelope(entry: dict, origin: str) -> dict:
    signature = entry["details"]["receipt"]
    return {
        "payload": signing.b64(signing.canonical_json(receipt_statement(entry, origin), allow_floats=True)),
        "payloadType": signing.IN_TOTO_PAYLOAD_TYPE,
        "signatures": [{"keyid": signature["keyid"], "sig": signature["sig"]}],
    }


def envelope_ref(envelope: dict | None) -> dict | None:
    """A result envelope by what the log records of it: payload digest, key id, signature."""
    if envelope is None:
        return None
    try:
        payload = signing.b64decode(envelope["payload"])
        signatures = [{"keyid": s["keyid"], "sig": s["sig"]} for s in envelope["signatures"]]
        payload_type = envelope["payloadType"]
    except (KeyError, TypeError, ValueError):
        return {"malformed": True}
    ref = {"statement_sha256": hashlib.sha256(payload).hexdigest(), "signatures": signatures}
    if payload_type != signing.IN_TOTO_PAYLOAD_TYPE:
        ref["payloadType"] = payload_type
    # Anything beyond DSSE's members would be served with the signed result as if part of it.
    extra = sorted(set(envelope) - {"payload", "payloadType", "signatures"}) + sorted(
        f"signatures[{i}].{k}"
        for i, s in enumerate(envelope["signatures"])
        for k in set(s) - {"keyid", "sig"}
    )
    if extra:
        ref["extra_members"] = extra
    return ref


def changes(entry: dict, origin: str) -> list[Change]:
    """The row changes one log entry makes. Pure: reads the entry only."""
    if entry.get("v") != ENTRY_VERSION:
        raise ProjectionError(f"entry version {entry.get('v')} is not projectable (expected {ENTRY_VERSION})")
    action = entry["action"]
    handler = _HANDLERS.get(action)
    if handler is None:
        return []  # views, downloads, refusals, fixity checks: no table changes
    try:
        return handler(entry, entry.get("details") or {}, origin)
    except (KeyError, TypeError) as exc:
        raise ProjectionError(f"{action} entry lacks {exc}") from None


def log_subject(kind: str, *ids) -> str:
    """How LogEntry.subject names the row an entry writes: "user:<id>" (the grants), "password:<id>",
    "otp:<id>", "recovery:<id>", "membership:<case>:<user>", "token:<digest>". The one spelling: the
    entries here, the seals' rows (models.SEALS) and the second factor's checks all ask by it."""
    return ":".join([kind, *(str(i) for i in ids)])


def _of_user(kind: str):
    return lambda e, d: log_subject(kind, _id(d["user"]))


def _of_membership(e: dict, d: dict) -> str:
    return log_subject("membership", _id(e["case"]), _id(d["user"]))


def _of_token(e: dict, d: dict) -> str:
    return log_subject("token", d["digest"])


# Entries that write a sealed row (models.SEALS), and how they name it: the row's seal binds the
# index of the newest such entry, and the row is refused at use while a later one exists.
_SUBJECTS = {
    "user.created": _of_user("user"),
    "user.role_changed": _of_user("user"),
    "user.activated": _of_user("user"),
    "user.deactivated": _of_user("user"),
    "account.second_factor_enrolled": _of_user("user"),
    "account.second_factor_removed": _of_user("user"),
    "account.password_changed": _of_user("password"),
    # Not a sealed row: the second factor's last step used and throttle, taken from these entries.
    "account.second_factor_used": _of_user("otp"),
    "account.second_factor_failed": _of_user("otp"),
    # Nor is this: the recovery codes' sheet, whose stored forms bind the entry's index.
    "account.recovery_codes_generated": _of_user("recovery"),
    "case.member_added": _of_membership,
    "case.member_removed": _of_membership,
    "token.issued": _of_token,
    "token.revoked": _of_token,
}


def subject_of(entry: dict) -> str | None:
    """The sealed row an entry (or an entry's body, before its index) writes, as LogEntry.subject
    names it; None for an entry that writes none (or lacks what would name it)."""
    name = _SUBJECTS.get(entry.get("action"))
    if name is None:
        return None
    try:
        return name(entry, entry.get("details") or {})
    except (KeyError, TypeError, ProjectionError):
        return None


def changes_nothing(action: str) -> bool:
    """True when an entry with this action changes no custody table (the log may queue it)."""
    return action not in _HANDLERS


def _user_created(e, d, origin):
    return [
        Change(
            "insert",
            "user",
            (_id(d["user"]),),
            {
                "username": d["user"]["username"],
                "email": d.get("email", ""),
                "role": d["role"],
                "is_active": True,
                **admin_flags(d["role"]),
                "second_factor": False,
            },
        )
    ]


def _user_role_changed(e, d, origin):
    return [Change("update", "user", (_id(d["user"]),), {"role": d["to"], **admin_flags(d["to"])})]


def _user_active_changed(e, d, origin):
    return [Change("update", "user", (_id(d["user"]),), {"is_active": e["action"] == "user.activated"})]


def _second_factor_changed(e, d, origin):
    # The flag only: the devices (TOTP key, recovery codes) are credentials, not in the log. An
    # account rebuilt with the flag and no device is asked for a code it cannot give until an
    # administrator resets it (second_factor._check_code): the requirement is never dropped.
    enrolled = e["action"] == "account.second_factor_enrolled"
    return [Change("update", "user", (_id(d["user"]),), {"second_factor": enrolled})]


def _case_created(e, d, origin):
    return [
        Change(
            "insert",
            "case",
            (_id(e["case"]),),
            {
                "reference": e["case"]["reference"],
                "title": d["title"],
                "description": d["description"],
                "created_at": e["time"],
                "created_by_id": _id(e["actor"]),
            },
        )
    ]


def _member_added(e, d, origin):
    return [Change("insert", "membership", (_id(e["case"]), _id(d["user"])), {"added_at": e["time"]})]


def _member_removed(e, d, origin):
    return [Change("delete", "membership", (_id(e["case"]), _id(d["user"])))]


def _token_issued(e, d, origin):
    return [
        Change(
            "insert",
            "token",
            (d["digest"],),
            {
                "user_id": _id(e["actor"]),
                "prefix": d["token"],
                "label": d["label"],
                "created_at": e["time"],
                "revoked_at": None,
            },
        )
    ]


def _token_revoked(e, d, origin):
    return [Change("update", "token", (d["digest"],), {"revoked_at": e["time"]})]


def _key_added(e, d, origin):
    return [
        Change(
            "insert",
            "key",
            (d["keyid"],),
            {
                "purpose": d["purpose"],
                "name": d["name"],
                "public_key_pem": d["public_key_pem"],
                "valid_from": e["time"],
                "valid_until": None,
            },
        )
    ]


def _key_retired(e, d, origin):
    return [Change("update", "key", (d["keyid"],), {"valid_until": e["time"]})]


def _evidence_received(e, d, origin):
    evidence = e["evidence"]
    return [
        Change(
            "ensure",
            "blob",
            (evidence["sha256"],),
            {"sha1": d["sha1"], "md5": d["md5"], "size": d["size"], "stored_at": e["time"]},
        ),
        Change(
            "insert",
            "evidence",
            (_id(evidence),),
            {
                "case_id": _id(e["case"]),
                "blob_id": evidence["sha256"],
                "original_name": d["original_name"],
                "description": d["description"],
                "source": d["source"],
                "media_type": d["media_type"],
                "submitted_by_id": _id(e["actor"]),
                "custodian_id": _id(e["actor"]),
                "received_at": e["time"],
                "log_index": e["index"],
                "receipt": receipt_envelope(e, origin),
            },
        ),
    ]


def _custody_released(e, d, origin):
    return [
        Change(
            "insert",
            "transfer",
            (d["transfer"],),
            {
                "evidence_id": _id(e["evidence"]),
                "from_user_id": _id(d["from"]),
                "to_user_id": _id(d["to"]),
                "purpose": d["purpose"],
                "location": d["location"],
                "status": "pending",
                "released_at": e["time"],
                "release_log_index": e["index"],
                "decided_at": None,
                "decision_log_index": None,
                "decision_note": "",
            },
        )
    ]


def _custody_decided(e, d, origin):
    accepted = e["action"] == "custody.accepted"
    out = [
        Change(
            "update",
            "transfer",
            (d["transfer"],),
            {
                "status": "accepted" if accepted else "refused",
                "decided_at": e["time"],
                "decision_log_index": e["index"],
                "decision_note": e.get("reason") or "",
            },
        )
    ]
    if accepted:
        out.append(Change("update", "evidence", (_id(e["evidence"]),), {"custodian_id": _id(d["to"])}))
    return out


def _analysis_requested(e, d, origin):
    return [
        Change(
            "insert",
            "analysis",
            (d["analysis"],),
            {
                "evidence_id": _id(e["evidence"]),
                "analyzer": d["analyzer"],
                "analyzer_version": d["version"],
                # Exact parameters (floats included) travel as a JSON string:
                # canonical leaf JSON carries no floats.
                "parameters": json.loads(d["parameters_json"]),
                "status": "queued",
                "requested_by_id": _id(e["actor"]),
                "requested_at": e["time"],
                "request_log_index": e["index"],
                "started_at": None,
                "worker": "",
                "attempts": 0,
                "finished_at": None,
                "error": "",
                "envelope": None,
                "statement_sha256": "",
                "result_log_index": None,
                "published_at": None,
                "publish_log_index": None,
            },
        )
    ]


def _analysis_started(e, d, origin):
    return [
        Change(
            "update",
            "analysis",
            (d["analysis"],),
            {"status": "running", "started_at": e["time"], "worker": d["worker"], "attempts": d["attempt"]},
        )
    ]


def _analysis_failed(e, d, origin):
    return [
        Change(
            "update",
            "analysis",
            (d["analysis"],),
            {"status": "failed", "finished_at": e["time"], "error": d["reason"]},
        )
    ]


def _analysis_requeued(e, d, origin):
    return [Change("update", "analysis", (d["analysis"],), {"status": "queued", "worker": ""})]


def _analysis_completed(e, d, origin):
    out = [
        Change(
            "update",
            "analysis",
            (d["analysis"],),
            {
                "status": "succeeded",
                "finished_at": e["time"],
                "envelope": {
                    "statement_sha256": d["statement_sha256"],
                    "signatures": [{"keyid": d["keyid"], "sig": d["sig"]}],
                },
                "statement_sha256": d["statement_sha256"],
                "result_log_index": e["index"],
            },
        )
    ]
    for artifact in d["artifacts"]:
        out.append(
            Change(
                "ensure",
                "blob",
                (artifact["sha256"],),
                {
                    "sha1": artifact["sha1"],
                    "md5": artifact["md5"],
                    "size": artifact["size"],
                    "stored_at": e["time"],
                },
            )
        )
        out.append(
            Change(
                "insert",
                "artifact",
                (d["analysis"], artifact["sha256"]),
                {"name": artifact["name"], "media_type": artifact["media_type"]},
            )
        )
    return out


def _result_published(e, d, origin):
    # The public announcement is the next entry (same transaction, under the
    # log lock); it is what outsiders get with its inclusion proof. verify_log
    # checks that it is there and says the same.
    return [
        Change(
            "update",
            "analysis",
            (d["analysis"],),
            {"published_at": e["time"], "publish_log_index": e["index"] + 1},
        )
    ]


def _trust_root_published(e, d, origin):
    return [
        Change("insert", "trust_root", (d["version"],), {"envelope": d["envelope"], "log_index": e["index"]})
    ]


_HANDLERS = {
    "trust_root.published": _trust_root_published,
    "user.created": _user_created,
    "user.role_changed": _user_role_changed,
    "user.activated": _user_active_changed,
    "user.deactivated": _user_active_changed,
    "account.second_factor_enrolled": _second_factor_changed,
    "account.second_factor_removed": _second_factor_changed,
    "case.created": _case_created,
    "case.member_added": _member_added,
    "case.member_removed": _member_removed,
    "token.issued": _token_issued,
    "token.revoked": _token_revoked,
    "key.added": _key_added,
    "key.retired": _key_retired,
    "evidence.received": _evidence_received,
    "custody.released": _custody_released,
    "custody.accepted": _custody_decided,
    "custody.refused": _custody_decided,
    "analysis.requested": _analysis_requested,
    "analysis.started": _analysis_started,
    "analysis.failed": _analysis_failed,
    "analysis.requeued": _analysis_requeued,
    "analysis.completed": _analysis_completed,
    "result.published": _result_published,
}


# --- values: entry terms <-> columns ---------------------------------------------


def parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC with microseconds, the one time format in signed documents (None stays None)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize(table: Table, column: str, value: Any) -> Any:
    """A column value as the entry states it (so live rows and projected rows compare)."""
    if value is None:
        return None
    if column in table.times:
        return format_time(value)
    if table.name == "analysis" and column == "envelope":
        return envelope_ref(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# --- stores ----------------------------------------------------------------------


class Conflict(Exception):
    """A change that does not fit the state (e.g. an update of a row that never existed)."""


class ModelStore:
    """Writes changes to the Django models of one database alias (services, rebuild)."""

    def __init__(self, using: str = "default"):
        from django.apps import apps

        from .models import SEALS

        self.using = using
        self.models = {name: apps.get_model(t.model) for name, t in TABLES.items()}
        projected = {kind.model: kind for kind in SEALS if kind.projected}
        self.seals = {name: projected[model] for name, model in self.models.items() if model in projected}

    def _qs(self, table: Table):
        return self.models[table.name].objects.using(self.using)

    def _columns(self, table: Table, fields: dict) -> dict:
        out = {}
        for column, value in fields.items():
            if column in table.times:
                value = parse_time(value)
            elif table.name == "analysis" and column == "envelope" and value is not None:
                value = materialize_envelope(value)
            out[column] = value
        return out

    def apply(self, change: Change, index: int, reserved: frozenset = frozenset()) -> None:
        """Write one change of the entry at ``index``; a row under a seal (an account's grants, a
        membership, an API token) is bound to that index and sealed again after it, without blessing
        a forgery: ``models.renewing_seal`` renews the seal only if it held before the write and was
        the newest (or the row is new)."""
        from .models import renewing_seal

        table = TABLES[change.table]
        kind = self.seals.get(table.name)
        if kind is None or change.op == "delete":
            self._apply(table, change, reserved)
            return
        where = dict(zip(table.key, change.key, strict=True))
        with renewing_seal(kind, self._qs(table), index, **where):
            self._apply(table, change, reserved)

    def _apply(self, table: Table, change: Change, reserved: frozenset) -> None:
        where = dict(zip(table.key, change.key, strict=True))
        qs = self._qs(table)
        values = self._columns(table, change.fields)
        if change.op == "insert" and (change.table, change.key) in reserved:
            # The service made the row first to learn its database id (users);
            # the entry's facts are written over it here.
            if qs.filter(**where).update(**values) != 1:
                raise Conflict(f"reserved {table.label} {change.key} does not exist")
        elif change.op == "insert":
            qs.create(**where, **values)
        elif change.op == "ensure":
            qs.get_or_create(**where, defaults=values)
        elif change.op == "update":
            if qs.filter(**where).update(**values) != 1:
                raise Conflict(f"{table.label} {change.key} does not exist")
        elif change.op == "delete":
            deleted, _ = qs.filter(**where).delete()
            if not deleted:
                raise Conflict(f"{table.label} {change.key} does not exist")
        else:
            raise ValueError(f"unknown change {change.op}")


def materialize_envelope(ref: dict) -> dict:
    """The full DSSE envelope of a result: the statement bytes are a blob named by their SHA-256."""
    from .storage import blob_store

    with blob_store().open(ref["statement_sha256"]) as f:
        payload = f.read()
    return {
        "payload": signing.b64(payload),
        "payloadType": signing.IN_TOTO_PAYLOAD_TYPE,
        "signatures": ref["signatures"],
    }


@functools.cache
def _model_store(using: str) -> ModelStore:
    """One store per database alias: every service call applies through it (no per-call model lookups)."""
    return ModelStore(using)


def apply(entry_row, using: str = "default", reserved: frozenset = frozenset()) -> None:
    """Write the rows that a just-appended entry implies (services call this after ``log.append``).

    ``reserved``: (table, key) pairs of rows the service created first to learn
    their database id; they are updated with the entry's facts instead of inserted.
    """
    from django.conf import settings

    if changes_nothing(entry_row.action):
        return  # also a queued entry (custody/log.py), which has no index yet
    store = _model_store(using)
    for change in changes(entry_row.entry, settings.CUSTODY_LOG_ORIGIN):
        store.apply(change, entry_row.entry["index"], reserved)
