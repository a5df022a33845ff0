"""Replay the log into a scratch store and compare every custody table with it.

``verify_log`` feeds each entry (in index order, as it streams the leaves)
to ``Replay.feed``, then calls ``Replay.compare``. The state the log implies
is kept in a scratch SQLite file, not in memory, so a log of millions of
entries is checked in bounded memory; live tables are streamed and each row
is looked up in the scratch store by its key.

Beyond the projection (custody/projection.py), the replay checks what only
the log can tell: the lookup columns of log rows (actor, case, evidence,
action, time) against their leaves; each item's hash chain (``prev``); and
that every receipt and result was signed by a key whose ``key.added`` entry
came before it and whose ``key.retired`` entry did not.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization

from . import entrysigs, merkle, projection, signing
from .projection import TABLES, Change, ProjectionError

BATCH = 2000
CACHED_ROWS = 20_000  # scratch rows and item chain heads kept in memory (LRU), per kind


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_PLAIN = re.compile(r"[0-9A-Za-z_.:@+-]*").fullmatch  # strings json.dumps writes as they are


def _k(key: tuple) -> str:
    """A row's key as the scratch store spells it: a JSON list, non-int parts as strings."""
    parts = []
    for part in key:
        # The common keys (uuids, names, numbers) spelt here, as json.dumps would.
        if type(part) is int:
            parts.append(str(part))
        elif type(part) is str and _PLAIN(part):
            parts.append(f'"{part}"')
        else:
            return json.dumps([str(part) if not isinstance(part, int) else part for part in key])
    return "[" + ", ".join(parts) + "]"


class Replay:
    def __init__(
        self,
        origin: str,
        problem: Callable[[str], None],
        directory: str | None = None,
        signatures: entrysigs.Checker | None = None,
    ):
        self.origin = origin
        self.problem = problem
        # Entry signatures: checked here, one at a time, unless the caller hands
        # a checker that spreads them over worker processes.
        self.signatures = signatures if signatures is not None else entrysigs.Checker(problem)
        # Write-through cache of scratch rows ({(table, key): data or None}) and
        # write-back cache of each item's newest entry ({evidence: (index, hash)}),
        # both bounded: most entries are about a few recent items.
        self._rows: collections.OrderedDict = collections.OrderedDict()
        self._chain: collections.OrderedDict = collections.OrderedDict()
        fd, self.path = tempfile.mkstemp(prefix="verify-state-", suffix=".sqlite3", dir=directory)
        os.close(fd)
        # A scratch file nobody else reads: no journal, no fsync.
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
            CREATE TABLE rows (tbl TEXT, key TEXT, data TEXT, seen INTEGER DEFAULT 0, PRIMARY KEY (tbl, key));
            CREATE TABLE chain (evidence TEXT PRIMARY KEY, idx INTEGER, hash TEXT);
            CREATE TABLE roots (size INTEGER PRIMARY KEY, root BLOB, time TEXT);
            CREATE TABLE keys (keyid TEXT PRIMARY KEY, purpose TEXT, pem TEXT, vkey TEXT,
                               added INTEGER, retired INTEGER);
            """
        )
        self._public_keys: dict[str, Any] = {}
        # Log keys valid for the next entry; recomputed after a key entry.
        self._log_signers: list | None = None
        self._log_signers_at = -1
        # A result.published entry waiting for its public announcement (the next entry).
        self._announcement_due: tuple[int, str | None, dict] | None = None
        self._announced_item: str | None = None
        self.receipts = 0
        self.results = 0

    def close(self) -> None:
        self.signatures.close()
        self.db.close()
        os.unlink(self.path)

    # --- scratch rows -----------------------------------------------------------

    def get(self, table: str, key: tuple) -> dict | None:
        """The row the log implies so far (callers must not change the dict returned)."""
        cache, text = self._rows, _k(key)  # the key as the store spells it
        try:
            found = cache[(table, text)]
            cache.move_to_end((table, text))
            return found
        except KeyError:
            pass
        row = self.db.execute("SELECT data FROM rows WHERE tbl = ? AND key = ?", (table, text)).fetchone()
        found = json.loads(row[0]) if row else None
        self._cache_row(table, text, found)
        return found

    def _cache_row(self, table: str, key_text: str, data: dict | None) -> None:
        self._rows[(table, key_text)] = data
        self._rows.move_to_end((table, key_text))
        if len(self._rows) > CACHED_ROWS:
            self._rows.popitem(last=False)

    def _put(self, table: str, key: tuple, data: dict) -> None:
        text, key_text = json.dumps(data), _k(key)
        self.db.execute(
            "INSERT OR REPLACE INTO rows (tbl, key, data) VALUES (?, ?, ?)", (table, key_text, text)
        )
        # As read back from the store: JSON round trip (tuples become lists, keys strings).
        self._cache_row(table, key_text, json.loads(text))

    def _apply(self, index: int, action: str, change: Change) -> None:
        table = TABLES[change.table]
        where = f"{table.label} {', '.join(str(k) for k in change.key)}"
        current = self.get(change.table, change.key)
        if change.op == "insert":
            if current is not None:
                self.problem(f"entry {index} ({action}) creates {where}, which an earlier entry created")
            self._put(change.table, change.key, dict(change.fields))
        elif change.op == "ensure":
            if current is None:
                self._put(change.table, change.key, dict(change.fields))
            else:
                differs = [
                    f for f in change.fields if f != "stored_at" and current.get(f) != change.fields[f]
                ]
                if differs:
                    self.problem(
                        f"entry {index} ({action}) states {where} with other {', '.join(differs)} "
                        "than an earlier entry"
                    )
        elif change.op == "update":
            if current is None:
                self.problem(f"entry {index} ({action}) changes {where}, which no earlier entry created")
                return
            self._put(change.table, change.key, {**current, **change.fields})
        elif change.op == "delete":
            if current is None:
                self.problem(f"entry {index} ({action}) removes {where}, which does not exist")
                return
            self.db.execute("DELETE FROM rows WHERE tbl = ? AND key = ?", (change.table, _k(change.key)))
            self._cache_row(change.table, _k(change.key), None)

    # --- roots at checkpoint sizes -----------------------------------------------

    def keep_root(self, size: int, root: bytes, time: str | None) -> None:
        """The root at ``size`` and the time of its newest entry (as format_time spells it)."""
        self.db.execute("INSERT OR REPLACE INTO roots VALUES (?, ?, ?)", (size, root, time))

    def root_at(self, size: int) -> tuple[bytes | None, object]:
        """(root recomputed at ``size``, time of the newest entry under it), or (None, None)."""
        if size == 0:
            return merkle.EMPTY_ROOT, None
        row = self.db.execute("SELECT root, time FROM roots WHERE size = ?", (size,)).fetchone()
        return (bytes(row[0]), projection.parse_time(row[1])) if row else (None, None)

    # --- keys -------------------------------------------------------------------

    def key_ids(self) -> dict[str, tuple[str, str]]:
        """Every key the log added: {keyid: (purpose, public key PEM)}."""
        return {k: (p, pem) for k, p, pem in self.db.execute("SELECT keyid, purpose, pem FROM keys")}

    def log_verifier_keys(self) -> list[str]:
        return [
            vkey for (vkey,) in self.db.execute("SELECT vkey FROM keys WHERE purpose = 'log' AND vkey != ''")
        ]

    def key_valid(self, index: int, keyid: str, purpose: str, what: str):
        """The public key if ``keyid`` was a ``purpose`` key at entry ``index``; reports and returns None otherwise."""
        row = self.db.execute(
            "SELECT purpose, pem, added, retired FROM keys WHERE keyid = ?", (keyid,)
        ).fetchone()
        if row is None:
            self.problem(
                f"entry {index}: {what} is signed by key {keyid[:16]}, which no key.added entry announces"
            )
            return None
        key_purpose, pem, added, retired = row
        if key_purpose != purpose:
            self.problem(
                f"entry {index}: {what} is signed by the {key_purpose} key {keyid[:16]}, not a {purpose} key"
            )
            return None
        if added > index or (retired is not None and retired < index):
            self.problem(
                f"entry {index}: {what} is signed by key {keyid[:16]}, valid only from entry {added}"
                + (f" to entry {retired}" if retired is not None else "")
            )
            return None
        if keyid not in self._public_keys:
            self._public_keys[keyid] = signing.load_public_key_pem(pem)
        return self._public_keys[keyid]

    def _track_keys(self, index: int, entry: dict) -> None:
        d = entry.get("details") or {}
        if entry["action"] == "key.added":
            try:
                public = signing.load_public_key_pem(d["public_key_pem"])
            except (KeyError, ValueError) as exc:
                self.problem(f"entry {index}: key.added carries no valid public key ({exc})")
                return
            if signing.dsse_keyid(public) != d.get("keyid"):
                self.problem(f"entry {index}: key.added names key id {d.get('keyid')} for another key")
                return
            vkey = ""
            if d.get("purpose") == "log":
                vkey = signing.note_verifier_key(d.get("name", ""), public)
            self.db.execute(
                "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?, ?, NULL)",
                (d["keyid"], d.get("purpose"), d["public_key_pem"], vkey, index),
            )
        elif entry["action"] == "key.retired":
            self.db.execute("UPDATE keys SET retired = ? WHERE keyid = ?", (index, d.get("keyid")))
        else:
            return
        self._log_signers = None  # the set of log keys changed after this entry

    def _check_signature(self, index: int, leaf_hash: bytes, signature: bytes) -> None:
        """Each entry is signed by a log key announced before it and not retired before it."""
        if self._log_signers is None or self._log_signers_at != index:
            rows = self.db.execute(
                "SELECT keyid, pem FROM keys WHERE purpose = 'log' AND added < ? AND (retired IS NULL OR retired >= ?)",
                (index, index),
            ).fetchall()
            self._log_signers = tuple(
                signing.load_public_key_pem(pem).public_bytes(
                    serialization.Encoding.Raw, serialization.PublicFormat.Raw
                )
                for _, pem in rows
            )
        self._log_signers_at = index + 1
        self.signatures.add(index, leaf_hash, signature, self._log_signers)

    # --- one entry ----------------------------------------------------------------

    def feed(self, index: int, entry: dict, leaf_hash: bytes, columns: dict) -> None:
        action = entry.get("action")
        try:
            changes = projection.changes(entry, self.origin)
        except ProjectionError as exc:
            self.problem(f"entry {index} ({action}): {exc}")
            return
        self._check_signature(index, leaf_hash, columns.pop("signature"))
        self._check_announcement(index, entry)
        self._track_keys(index, entry)
        evidence_id = self._evidence_of(entry)
        self._check_columns(index, entry, columns, evidence_id)
        if evidence_id is not None:
            self._check_chain(index, entry, leaf_hash, evidence_id)
        if action == "evidence.received":
            self._check_receipt(index, entry)
        for change in changes:
            self._apply(index, action, change)

    def _check_announcement(self, index: int, entry: dict) -> None:
        """Each result.published entry is followed by its public announcement, saying the same."""
        d = entry.get("details") or {}
        due, self._announcement_due = self._announcement_due, None
        self._announced_item = due[1] if due is not None else None
        if due is not None:
            published, _, said = due
            fields = ("public_statement_sha256", "public_keyid", "public_sig", "analyzer")
            if (
                entry.get("action") != "result.announced"
                or d.get("published_entry") != published
                or any(d.get(f) != said.get(f) for f in fields)
            ):
                self.problem(
                    f"entry {index}: is not the public announcement of the publication in entry {published}"
                )
        elif entry.get("action") == "result.announced":
            self.problem(f"entry {index}: announces a publication that the previous entry does not record")
        if entry.get("action") == "result.published":
            evidence = (entry.get("evidence") or {}).get("id")
            self._announcement_due = (index, evidence, d)

    def finish(self) -> None:
        self.signatures.finish()
        if self._announcement_due is not None:
            self.problem(f"entry {self._announcement_due[0]}: a publication without its public announcement")

    def _evidence_of(self, entry: dict) -> str | None:
        evidence = entry.get("evidence")
        if not evidence:
            return None
        if "id" in evidence:
            return evidence["id"]
        # Public announcements name the item by SHA-256 only; the publication
        # they announce (the entry before, checked above) says which item.
        return self._announced_item

    def _check_columns(self, index: int, entry: dict, columns: dict, evidence_id: str | None) -> None:
        actor = (entry.get("actor") or {}).get("id")
        case = (entry.get("case") or {}).get("id")
        if entry.get("public") and evidence_id is not None:
            item = self.get("evidence", (evidence_id,))
            case = item["case_id"] if item else None
        expected = {
            "action": entry.get("action"),
            "time": entry.get("time"),
            "actor": actor,
            "case": case,
            "evidence": evidence_id,
        }
        if "subject" in columns:
            # The sealed row the entry writes: the column a sealed row's use asks the log by (a later
            # entry about the row, its subject cleared here, would let an earlier row and seal back in).
            expected["subject"] = projection.subject_of(entry)
        item = self.get("evidence", (evidence_id,)) if evidence_id is not None else None
        named = (entry.get("evidence") or {}).get("sha256")
        if item is not None and named != item["blob_id"]:
            self.problem(
                f"entry {index}: names item {evidence_id} by SHA-256 {named}, the log received {item['blob_id']}"
            )
        for column, value in expected.items():
            found = columns[column]
            if found != value:
                self.problem(
                    f"entry {index}: the row's {column} column says {found!r}, its signed leaf says {value!r}"
                )

    def _check_chain(self, index: int, entry: dict, leaf_hash: bytes, evidence_id: str) -> None:
        chain = self._chain
        row = chain.pop(evidence_id, None)
        if row is None:
            row = self.db.execute("SELECT idx, hash FROM chain WHERE evidence = ?", (evidence_id,)).fetchone()
        expected = {"index": row[0], "hash": row[1]} if row else None
        if entry.get("prev") != expected:
            self.problem(
                f"entry {index}: links to {entry.get('prev')} as the previous entry about item {evidence_id}, "
                f"but that entry is {expected}"
            )
        # Written to the scratch store only when it leaves the cache: nothing else reads it.
        chain[evidence_id] = (index, leaf_hash.hex())
        if len(chain) > CACHED_ROWS:
            old, (old_index, old_hash) = chain.popitem(last=False)
            self.db.execute("INSERT OR REPLACE INTO chain VALUES (?, ?, ?)", (old, old_index, old_hash))

    def _check_receipt(self, index: int, entry: dict) -> None:
        self.receipts += 1
        try:
            envelope = projection.receipt_envelope(entry, self.origin)
            keyid = envelope["signatures"][0]["keyid"]
        except (KeyError, TypeError) as exc:
            self.problem(f"entry {index}: intake entry lacks its receipt signature ({exc})")
            return
        key = self.key_valid(index, keyid, "intake", "the intake receipt")
        if key is not None:
            try:
                signing.dsse_verify(envelope, {keyid: key})
            except ValueError as exc:
                self.problem(f"entry {index}: the intake receipt's signature does not verify ({exc})")

    # --- the tables -----------------------------------------------------------------

    def compare(self, using: str = "default") -> None:
        from django.apps import apps

        self.finish()
        for name, table in TABLES.items():
            model = apps.get_model(table.model)
            columns = [*table.key, *table.fields]
            rows = model.objects.using(using).order_by(*table.key).values_list(*columns)
            for values in rows.iterator(chunk_size=BATCH):
                key = tuple(
                    projection.normalize(table, c, v) for c, v in zip(table.key, values, strict=False)
                )
                live = {
                    c: projection.normalize(table, c, v)
                    for c, v in zip(table.fields, values[len(table.key) :], strict=True)
                }
                self._compare_row(name, table, key, live, values)
            for key_text, _data in self.db.execute(
                "SELECT key, data FROM rows WHERE tbl = ? AND seen = 0", (name,)
            ):
                key = json.loads(key_text)
                self.problem(f"{self._label(table, key)}: the log records it, the table has no such row")
        self._check_storage_forms(using)
        # The app's admin is read-only and writes no admin log: any row there is made up.
        from django.contrib.admin.models import LogEntry as AdminLogEntry

        count = AdminLogEntry.objects.using(using).count()
        if count:
            self.problem(
                f"{count} admin log row(s) exist (django_admin_log); the app's admin never writes one"
            )
        # The app grants no Django groups or permissions: any row there came from elsewhere.
        user_model = apps.get_model("custody.User")
        for through, what in (
            (user_model.groups.through, "group membership"),
            (user_model.user_permissions.through, "permission"),
        ):
            count = through.objects.using(using).count()
            if count:
                self.problem(f"{count} user {what} row(s) exist; the app never grants any")

    def _check_storage_forms(self, using: str) -> None:
        """SQLite keeps ids and times as text: a value stored in another spelling of the same id or
        instant compares equal once parsed, but SQL lookups and ORDER BY see the text (an item made
        unreachable, an entry hidden from its item's page, a list reordered)."""
        import re

        from django.apps import apps
        from django.db import connections, models

        connection = connections[using]
        if connection.vendor != "sqlite":
            return  # PostgreSQL stores uuid and timestamptz as values, not text
        uuid_form = re.compile(r"[0-9a-f]{32}")
        time_form = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?")
        wanted = [apps.get_model(t.model) for t in TABLES.values()] + [apps.get_model("custody.LogEntry")]
        for model in wanted:
            checks = []
            for f in model._meta.concrete_fields:
                target = f.target_field if f.is_relation else f
                if isinstance(target, models.UUIDField):
                    checks.append((f.column, uuid_form))
                elif isinstance(f, models.DateTimeField):
                    checks.append((f.column, time_form))
            if not checks:
                continue
            quote = connection.ops.quote_name
            pk = model._meta.pk.column
            # CAST: the raw text, before any converter of the driver parses it.
            # Only our own table and column names are formatted in; there are no values.
            columns = ", ".join(f"CAST({quote(c)} AS TEXT)" for c, _ in checks)
            sql = f"SELECT {quote(pk)}, {columns} FROM {quote(model._meta.db_table)}"  # noqa: S608
            with connection.cursor() as cursor:
                cursor.execute(sql)
                while rows := cursor.fetchmany(BATCH):
                    for row in rows:
                        for (column, form), value in zip(checks, row[1:], strict=True):
                            if value is not None and not (isinstance(value, str) and form.fullmatch(value)):
                                self.problem(
                                    f"{model._meta.db_table} row {row[0]}: {column} is stored as {value!r}, "
                                    "not in the form the server writes (lookups and sorting see another value)"
                                )

    def _label(self, table, key) -> str:
        key = list(key)
        if table.name == "membership":
            return f"membership of user {self._who(key[1])} in case {key[0]}"
        if table.name == "user":
            return f"user {self._who(key[0])}"
        return f"{table.label} {', '.join(str(k) for k in key)}"

    def _who(self, user_id) -> str:
        if user_id is None:
            return "nobody"
        row = self.get("user", (user_id,))
        return f"{user_id} ({row['username']})" if row else f"{user_id} (unknown to the log)"

    def _show(self, column: str, value) -> str:
        if value is not None and (
            column.endswith("user_id") or column.endswith("_by_id") or column == "custodian_id"
        ):
            return self._who(value)
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else repr(value)
        return text if len(text) <= 120 else text[:117] + "..."

    def _compare_row(self, name: str, table, key: tuple, live: dict, raw: tuple) -> None:
        expected = self.get(name, key)
        if expected is None:
            self.problem(f"{self._label(table, key)}: the table has it, no log entry accounts for it")
            return
        self.db.execute("UPDATE rows SET seen = 1 WHERE tbl = ? AND key = ?", (name, _k(key)))
        for column in table.fields:
            # As JSON text, types included: in Python True == 1 == 1.0, on a page they differ.
            if _json(live[column]) != _json(expected.get(column)):
                self.problem(
                    f"{self._label(table, key)}: {column}: log says {self._show(column, expected.get(column))}, "
                    f"table says {self._show(column, live[column])}"
                )
        if name == "analysis" and expected.get("envelope") and live["envelope"] == expected["envelope"]:
            self._check_result_signature(key, raw[len(table.key) + table.fields.index("envelope")], expected)

    def _check_result_signature(self, key: tuple, envelope: dict, expected: dict) -> None:
        self.results += 1
        index = expected["result_log_index"]
        keyid = expected["envelope"]["signatures"][0]["keyid"]
        public = self.key_valid(index, keyid, "results", f"the result of analysis {key[0]}")
        if public is not None:
            try:
                signing.dsse_verify(envelope, {keyid: public})
            except ValueError as exc:
                self.problem(f"analysis {key[0]}: the signed result does not verify ({exc})")
