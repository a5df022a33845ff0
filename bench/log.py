#!/usr/bin/env python
"""Custody log benchmark on PostgreSQL: appends/s, and proof and verify_log time and memory at 1M entries.

    python bench/log.py [--entries 1000000] [--small-entries 100000] [--items 1000]
                        [--writers 8] [--seconds 10] [--no-prototypes] [--db-prefix custody_bench]

Creates a throwaway database ``<db-prefix>_<pid>`` on the local PostgreSQL
server (``--pg``, default postgres://postgres@127.0.0.1:5432/) and a temp data
dir, migrates, makes the signing keys (their ``key.added`` entries and the
first trust root), and drops both at the end.

0. Seed, through the real services: 12 users, ``--items``/25 cases with
   members, ``--items`` evidence items (small random files, signed receipts).
   Every later entry is about one of these items, with an action that changes
   no table (evidence.viewed, evidence.downloaded, fixity.checked,
   access.refused), so the custody tables stay the projection of the log.
1. Appends/s: ``--writers`` processes, each looping
   ``with transaction.atomic(): log.append(...)`` for ``--seconds``; and the same
   with 1 writer. These entries change no table, so the app queues them in the
   action's transaction and the appenders sequence them after COMMIT
   (custody/log.py): the run reports appends/s (committed actions), entries
   indexed during the run, the backlog left, and the lag from each action's
   COMMIT to its entry's index. "app, waiting": each writer also waits for its
   entry's index before its next action (what a response that shows the index
   does). "app, direct": CUSTODY_LOG_QUEUE off, every entry takes the head lock
   in its action's transaction (as state-changing entries still do). Baseline
   in the same run: the same number of processes doing plain single-row
   autocommit INSERTs of a leaf-sized row into a scratch table. Prototypes (not
   the app; labelled, to size the alternatives): the direct append with
   synchronous_commit=off (unsafe), a one-statement PL/pgSQL append function (3
   round trips, and pipelined in 1). The prototypes run on a copy of the
   database made after the seed (their entries carry no signature and no
   ``prev``); the app's entries are checked with ``audit.verify``.
2. The log is then bulk-loaded (not through append(): COPY of version 2
   entries built as log.append builds them, each with its item's ``prev`` link
   and the log key's signature, folded with merkle.append_to_frontier) to
   ``--small-entries`` and then ``--entries``; a checkpoint is signed at each
   size with log.latest_checkpoint().
3. At ``--entries``: inclusion and consistency proofs (log.inclusion_proof /
   log.consistency_proof, DB round trips included; and through the Django test
   client) and their query counts. At both sizes: ``manage.py verify_log
   --skip-blobs`` in its own process, wall time, entries/s and peak RSS (VmHWM),
   against a floor (stream every leaf and SHA-256 it); the ratio of the two
   peaks says whether its memory is bounded. verify_log must answer OK (the
   replay of the log into a scratch store matches every table), or the timing
   means nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import platform
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `python bench/log.py` puts bench/ first on sys.path, where this file would
# shadow any top-level module called "log"; the project root goes there instead.
sys.path[0] = str(ROOT)

TARGET_APPENDS = 5000  # appends/s with 8 writers
TARGET_PROOF_MS = 5.0  # p99, at --entries
MP = multiprocessing.get_context("fork")
ENTRY_STEP = dt.timedelta(milliseconds=137)  # log time between bulk-loaded entries
# The beat signs a checkpoint every 60 s when the tree grew (CUSTODY_CHECKPOINT_INTERVAL):
# at ENTRY_STEP, one per 438 entries, ~2,300 at 1M.
CHECKPOINT_EVERY = round(60 / ENTRY_STEP.total_seconds())

# --- entries that look like the app's -------------------------------------------------

ACTIONS = [  # (action, weight): entries about existing items that change no table
    ("evidence.viewed", 45),
    ("evidence.downloaded", 18),
    ("fixity.checked", 30),
    ("access.refused", 7),
]
FIRST_NAMES = ["ana", "ben", "chen", "dana", "emil", "fatima", "goran", "hana", "ivo", "jun", "kofi", "lena"]


def seed_custody(rng: random.Random, users: int, cases: int, items: int) -> None:
    """Users, cases, memberships and evidence items made through the real services.

    Every later entry is about one of these items, with an action that
    changes no table, so the custody tables stay the projection of the log
    whatever number of entries follows.
    """
    from django.conf import settings

    from custody import services
    from custody.hashing import hash_file
    from custody.tus import ReceivedFile

    # The password hash is not a custody fact; PBKDF2 would cost ~0.5 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    people = [
        services.create_user(
            actor=None,
            username=f"{FIRST_NAMES[i % len(FIRST_NAMES)]}.inv{i:03d}",
            password=secrets.token_urlsafe(12),
            role="investigator",
        )
        for i in range(users)
    ]
    opened = []
    for i in range(cases):
        owner = people[i % users]
        case = services.create_case(
            actor=owner, reference=f"CR-{2021 + i % 5}-{i:06d}", title=f"Operation {rng.getrandbits(13):04d}"
        )
        for other in rng.sample(people, min(3, users)):
            services.add_member(actor=owner, case=case, user=other)
        opened.append((case, owner))
    tmp = Path(settings.FILE_UPLOAD_TEMP_DIR)
    for i in range(items):
        case, owner = opened[i % cases]
        path = tmp / f"bench-seed-{i}"
        path.write_bytes(rng.randbytes(rng.randrange(512, 8192)))
        digests, size = hash_file(path)
        services.receive_evidence(
            actor=owner,
            case=case,
            upload=ReceivedFile(path, f"IMG_{i:06d}.E01", size, digests),
            source="seized at scene",
            client="10.0.0.1",
        )
        path.unlink()


class Pools:
    """The users and evidence items (with their cases) that the generated entries refer to: real rows."""

    def __init__(self, rng: random.Random):
        from custody.models import Evidence, User

        self.users = [
            {"id": pk, "username": name}
            for pk, name in User.objects.order_by("pk").values_list("pk", "username")
        ]
        self.items = []  # (evidence uuid, entry's evidence, case uuid, entry's case, size)
        rows = Evidence.objects.order_by("received_at").values_list(
            "id", "blob_id", "blob__size", "case_id", "case__reference"
        )
        for eid, blob, size, cid, reference in rows:
            self.items.append(
                (eid, {"id": str(eid), "sha256": blob}, cid, {"id": str(cid), "reference": reference}, size)
            )
        self.clients = [
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(999)
        ]
        self.actions = [a for a, weight in ACTIONS for _ in range(weight)]


def entry_fields(rng: random.Random, pools: Pools) -> dict:
    """Everything of an entry but index, time and prev, as the services write it.

    ``ids`` holds LogEntry's query columns: (action, actor_id, case_id, evidence_id).
    """
    action = rng.choice(pools.actions)
    actor = rng.choice(pools.users)
    evidence_id, evidence, case_id, case, size = rng.choice(pools.items)
    client, reason, details = rng.choice(pools.clients), None, {}
    if action == "evidence.downloaded":
        reason = rng.choice(["analysis", "disclosure to defence", "court copy", "peer review"])
    elif action == "fixity.checked":  # the scheduled check: no actor, no client
        actor = client = None
        details = {"ok": True, "sha256": evidence["sha256"], "size": size}
    return {
        "action": action,
        "actor": actor,
        "case": case,
        "evidence": evidence,
        "client": client,
        "reason": reason,
        "details": details,
        "ids": (action, actor["id"] if actor else None, case_id, evidence_id),
    }


def entry_dict(index: int, when: dt.datetime, f: dict, prev: dict | None = None) -> dict:
    """The entry exactly as log.append builds it (``prev``: the previous entry about the item)."""
    from custody import log

    entry = {
        "v": log.ENTRY_VERSION,
        "index": index,
        "time": log.format_time(when),
        "actor": f["actor"],
        "action": f["action"],
        "case": f["case"],
        "evidence": f["evidence"],
        "client": f["client"],
        "reason": f["reason"],
        "details": f["details"],
    }
    if f["evidence"] is not None:
        entry["prev"] = prev
    return entry


def split_leaf(entry: dict) -> tuple[bytes, bytes]:
    """Canonical JSON of ``entry`` cut around its index: leaf = prefix + str(index) + suffix.

    Lets an appender that learns the index only under the lock (in SQL) build
    the exact leaf log.append would: keys are sorted, and "index" is top-level.
    """
    from custody.signing import canonical_json

    before = {k: v for k, v in entry.items() if k < "index"}
    after = {k: v for k, v in entry.items() if k > "index"}
    return canonical_json(before)[:-1] + b',"index":', b"," + canonical_json(after)[1:]


# --- system facts -----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (a PostgreSQL backend) from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- prototypes' SQL (bench database only) ---------------------------------------------

PROTOTYPE_SQL = [
    "CREATE TABLE bench_scratch (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
    # PROTOTYPE: log.append as one statement. Same lock, same rows, same bytes;
    # the leaf is spliced around the index it takes under the lock.
    r"""CREATE FUNCTION bench_log_append(p_prefix bytea, p_suffix bytea, p_time timestamptz,
            p_action text, p_actor bigint, p_case uuid, p_evidence uuid) RETURNS bigint
        LANGUAGE plpgsql AS $$
    DECLARE
        idx bigint; fr bytea; leaf bytea; acc bytea; lvl int := 0; n int;
    BEGIN
        SELECT size, frontier INTO idx, fr FROM custody_loghead WHERE id = 1 FOR UPDATE;
        leaf := p_prefix || convert_to(idx::text, 'UTF8') || p_suffix;
        acc := sha256('\x00'::bytea || leaf);
        INSERT INTO custody_logentry (index, leaf, leaf_hash, time, action, actor_id, case_id, evidence_id)
            VALUES (idx, leaf, acc, p_time, p_action, p_actor, p_case, p_evidence);
        WHILE (idx >> lvl) & 1 = 1 LOOP
            n := length(fr);
            acc := sha256('\x01'::bytea || substring(fr FROM n - 31 FOR 32) || acc);
            fr := substring(fr FROM 1 FOR n - 32);
            lvl := lvl + 1;
            INSERT INTO custody_treenode (level, index, hash) VALUES (lvl, idx >> lvl, acc);
        END LOOP;
        fr := fr || acc;
        n := length(fr) / 32;
        acc := substring(fr FROM (n - 1) * 32 + 1 FOR 32);
        FOR i IN REVERSE n - 1 .. 1 LOOP
            acc := sha256('\x01'::bytea || substring(fr FROM (i - 1) * 32 + 1 FOR 32) || acc);
        END LOOP;
        UPDATE custody_loghead SET size = idx + 1, frontier = fr, root = acc WHERE id = 1;
        RETURN idx;
    END $$""",
]
CALL_APPEND = "SELECT bench_log_append(%s, %s, %s, %s, %s::bigint, %s::uuid, %s::uuid)"
LEAF_COPY = (
    "COPY custody_logentry (index, leaf, leaf_hash, time, action, actor_id, case_id, evidence_id, signature) "
    "FROM STDIN (FORMAT BINARY)"
)
LEAF_TYPES = ["int8", "bytea", "bytea", "timestamptz", "text", "int8", "uuid", "uuid", "bytea"]
NODE_COPY = "COPY custody_treenode (level, index, hash) FROM STDIN (FORMAT BINARY)"
NODE_TYPES = ["int2", "int8", "bytea"]


# --- writers (each in its own process) ---------------------------------------------------


class Writer:
    """One writer process's loop body. setup() runs before the clock starts."""

    def __init__(self, url: str, wid: int):
        self.url, self.wid = url, wid
        self.rng = random.Random(1000 + wid)
        self.pools = _POOLS["pools"]  # made from the database before the fork

    def setup(self) -> None: ...

    def reset(self) -> None:
        """After the warm-up: forget what it counted."""

    def op(self) -> None: ...

    def backend_pid(self) -> int:
        from django.db import connection

        return connection.connection.info.backend_pid

    def extra(self) -> dict:
        return {}

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


class BaselineInsert(Writer):
    """Plain autocommit single-row INSERT of a leaf-sized row: the server's commit rate."""

    def setup(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.url, autocommit=True)
        self.payloads = [self.rng.randbytes(self.rng.randrange(300, 450)) for _ in range(64)]

    def backend_pid(self) -> int:
        return self.conn.info.backend_pid

    def op(self) -> None:
        self.conn.execute(
            "INSERT INTO bench_scratch (payload) VALUES (%s)", (self.rng.choice(self.payloads),)
        )

    def close(self) -> None:
        self.conn.close()


class AtomicInsert(BaselineInsert):
    """The floor of any append that writes in the action's Django transaction:
    ``with transaction.atomic()`` around the same single-row INSERT (BEGIN, INSERT, COMMIT)."""

    def setup(self) -> None:
        from django.db import connection

        connection.ensure_connection()
        self.payloads = [self.rng.randbytes(self.rng.randrange(300, 450)) for _ in range(64)]

    def backend_pid(self) -> int:
        return Writer.backend_pid(self)

    def op(self) -> None:
        from django.db import connection, transaction

        with transaction.atomic(), connection.cursor() as c:
            c.execute("INSERT INTO bench_scratch (payload) VALUES (%s)", (self.rng.choice(self.payloads),))

    def close(self) -> None:
        Writer.close(self)


class _Timer:
    """execute_wrapper: splits each append into lock wait, work under the lock, and commit."""

    def __init__(self):
        self.statements = self.locked_statements = 0
        self.lock_wait = self.locked_at = self.last_end = 0.0

    def __call__(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            t1 = time.perf_counter()
            self.statements += 1
            if "FOR UPDATE" in sql:
                self.lock_wait, self.locked_at = t1 - t0, t1
            elif self.locked_at:
                self.locked_statements += 1
            self.last_end = t1


class AppAppend(Writer):
    """The app: ``with transaction.atomic(): log.append(...)`` (queued on PostgreSQL, indexed after COMMIT)."""

    sync_off = False
    queue = True
    wait = False

    def setup(self) -> None:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.db import connection

        from custody import log
        from custody.models import Case, Evidence

        settings.CUSTODY_LOG_QUEUE = self.queue
        # Count the batches this process sequences (instrumentation only).
        batches, sequence_batch = [], log._sequence_batch

        def counted(cursor, sql):
            count = sequence_batch(cursor, sql)
            if count:
                batches.append(count)
            return count

        log._sequence_batch = counted
        self.batches = batches
        self.stamps, self.waits = [], []  # (queue id, COMMIT time); COMMIT -> index seconds
        connection.ensure_connection()
        if self.sync_off:
            with connection.cursor() as c:
                c.execute("SET synchronous_commit TO off")
        user = get_user_model()
        self.actors = {u["id"]: user(id=u["id"], username=u["username"]) for u in self.pools.users}
        self.cases = {cid: Case(id=cid, reference=c["reference"]) for _, _, cid, c, _ in self.pools.items}
        self.evidence = {eid: Evidence(id=eid, blob_id=e["sha256"]) for eid, e, _, _, _ in self.pools.items}
        self.timer = _Timer()
        self._wrap = contextlib.ExitStack()
        self._wrap.enter_context(connection.execute_wrapper(self.timer))
        self.reset()

    def reset(self) -> None:
        self.sums = {"wait": 0.0, "hold": 0.0, "commit": 0.0, "statements": 0, "locked_statements": 0}
        del self.batches[:], self.stamps[:], self.waits[:]

    def op(self) -> None:
        from django.db import transaction

        from custody import log

        f = entry_fields(self.rng, self.pools)
        action, actor, case, evidence = f["ids"]
        t = self.timer
        t.statements = t.locked_statements = 0
        t.locked_at = 0.0
        committed = [0.0]
        with transaction.atomic():
            # Registered before the append's own callback (the sequencing), so it stamps the COMMIT.
            transaction.on_commit(lambda: committed.__setitem__(0, time.time()))
            row = log.append(
                action,
                actor=self.actors.get(actor),
                case=self.cases[case],
                evidence=self.evidence[evidence],
                client=f["client"],
                reason=f["reason"],
                details=f["details"],
            )
        if isinstance(row, log.Queued):
            if self.wait:
                row.wait()
                self.waits.append(time.time() - committed[0])
            else:
                self.stamps.append((row.queue_id, committed[0]))
            return
        done = time.perf_counter()
        s = self.sums
        s["wait"] += t.lock_wait
        s["hold"] += done - t.locked_at
        s["commit"] += done - t.last_end
        s["statements"] += t.statements
        s["locked_statements"] += t.locked_statements

    def extra(self) -> dict:
        return {**self.sums, "batches": self.batches, "stamps": self.stamps, "waits": self.waits}

    def close(self) -> None:
        self._wrap.close()
        super().close()


class AppAppendWait(AppAppend):
    """The app, each writer waiting for its entry's index before its next action."""

    wait = True


class AppAppendDirect(AppAppend):
    """The app with CUSTODY_LOG_QUEUE off: the entry takes the head lock in the action's transaction."""

    queue = False


class AppAppendAsync(AppAppendDirect):
    """PROTOTYPE (unsafe): the direct append with synchronous_commit=off in the writers' sessions."""

    sync_off = True


class FunctionAppend(Writer):
    """PROTOTYPE: the append as one PL/pgSQL call in the app's transaction (BEGIN, SELECT, COMMIT)."""

    def setup(self) -> None:
        from django.db import connection

        connection.ensure_connection()

    def params(self) -> tuple:
        from django.utils import timezone

        f = entry_fields(self.rng, self.pools)
        now = timezone.now()
        prefix, suffix = split_leaf(entry_dict(0, now, f))
        return (prefix, suffix, now, *f["ids"])

    def op(self) -> None:
        from django.db import connection, transaction

        with transaction.atomic(), connection.cursor() as c:
            c.execute(CALL_APPEND, self.params())


class PipelinedFunctionAppend(FunctionAppend):
    """PROTOTYPE: BEGIN, the PL/pgSQL call and COMMIT sent in one round trip (psycopg pipeline)."""

    def setup(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.url, autocommit=True)

    def backend_pid(self) -> int:
        return self.conn.info.backend_pid

    def op(self) -> None:
        conn = self.conn
        with conn.pipeline():
            conn.execute("BEGIN")
            cur = conn.execute(CALL_APPEND, self.params())
            conn.execute("COMMIT")
        cur.fetchone()

    def close(self) -> None:
        self.conn.close()


WRITERS = {
    "baseline": BaselineInsert,
    "baseline-atomic": AtomicInsert,
    "app": AppAppend,
    "app-wait": AppAppendWait,
    "app-direct": AppAppendDirect,
    "app-async": AppAppendAsync,
    "function": FunctionAppend,
    "function-pipelined": PipelinedFunctionAppend,
}
APP_KINDS = ("app", "app-wait", "app-direct")  # the app's own append, on the database verified after


_POOLS: dict = {}  # {"pools": Pools}, set before the writers fork


def _use_database(url: str) -> None:
    """Point Django's default connection at ``url``'s database (a writer process of the prototypes' copy)."""
    from django.db import connections

    connections["default"].settings_dict["NAME"] = url.rsplit("/", 1)[1]


def _writer_main(kind, url, wid, ready, go, clock, out) -> None:
    _use_database(url)
    writer = WRITERS[kind](url, wid)
    try:
        writer.setup()
        for _ in range(3):  # warm: connection, caches, prepared statements
            writer.op()
        writer.reset()
        ready.wait()
        go.wait()
        start, deadline = clock[0], clock[1]
        while time.monotonic() < start:
            time.sleep(0.0005)
        backend = writer.backend_pid()
        cpu0, server0 = own_cpu(), proc_cpu(backend)
        latencies = []
        now = time.monotonic()
        while now < deadline:
            writer.op()
            end = time.monotonic()
            latencies.append(end - now)
            now = end
        out.put(
            {
                "wid": wid,
                "count": len(latencies),
                "end": now,
                "latencies": latencies,
                "cpu": own_cpu() - cpu0,
                "server_cpu": proc_cpu(backend) - server0,
                **writer.extra(),
            }
        )
    except BaseException as exc:
        out.put({"wid": wid, "error": f"{type(exc).__name__}: {exc}"})
        ready.abort()  # the parent stops waiting for the others
        raise
    finally:
        writer.close()


def _log_state(url: str) -> tuple[int, int]:
    """(log size, queued entries) as another connection sees them now."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT (SELECT size FROM custody_loghead WHERE id = 1), (SELECT count(*) FROM custody_logqueue)"
        ).fetchone()


def run_writers(kind: str, url: str, writers: int, seconds: float) -> dict:
    from django.db import connections

    connections.close_all()  # no connection may cross the fork
    ready, go = MP.Barrier(writers + 1), MP.Barrier(writers + 1)
    clock = MP.Array("d", 2)
    out = MP.Queue()
    procs = [
        MP.Process(target=_writer_main, args=(kind, url, w, ready, go, clock, out)) for w in range(writers)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=120)
    except Exception:
        errors = []
        while not out.empty():
            errors.append(out.get().get("error"))
        raise RuntimeError(f"{kind} writers failed to start: {errors}") from None
    # After the warm-up (whose entries the writers sequenced): the log as the clock starts.
    size0 = _log_state(url)[0] if kind in APP_KINDS else 0
    start = time.monotonic() + 0.05
    clock[0], clock[1] = start, start + seconds
    busy0 = cpu_busy()
    go.wait()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    busy1 = cpu_busy()
    size1, backlog = _log_state(url) if kind in APP_KINDS else (0, 0)
    for p in procs:
        p.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{kind} writer failed: {errors[0]}")
    wall = max(r["end"] for r in results) - start
    count = sum(r["count"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    res = {
        "kind": kind,
        "writers": writers,
        "count": count,
        "wall": wall,
        "rate": count / wall,
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "client_cpu": sum(r["cpu"] for r in results),
        "server_cpu": sum(r["server_cpu"] for r in results),
        "cores_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * (os.cpu_count() or 1),
    }
    for key in ("wait", "hold", "commit", "statements", "locked_statements"):
        if key in results[0]:
            res[key] = sum(r[key] for r in results)
    if kind in APP_KINDS:
        from custody import log
        from custody.models import LogEntry

        # Entries still queued when the clock stopped go in now (as the next
        # appender or the beat would put them), then each queued entry's lag
        # from its action's COMMIT to the time it was given with its index.
        drained = log.drain()
        stamps = dict(x for r in results for x in r["stamps"])
        lags = []
        ids = list(stamps)
        for i in range(0, len(ids), 10_000):
            for queue_id, when in LogEntry.objects.filter(queue_id__in=ids[i : i + 10_000]).values_list(
                "queue_id", "time"
            ):
                lags.append(when.timestamp() - stamps.pop(queue_id))
        batches = [x for r in results for x in r["batches"]]
        waits = [x for r in results for x in r["waits"]]
        res.update(
            indexed=size1 - size0,
            backlog=backlog,
            drained=drained,
            lost=len(stamps),  # queued entries of committed actions that never reached the log
            lag=lags,
            waits=waits,
            batches=len(batches),
            batch_mean=statistics.mean(batches) if batches else 0.0,
            batch_max=max(batches, default=0),
        )
    return res


# --- the 1M log: bulk load --------------------------------------------------------------


def bulk_load(url: str, target: int, pools: Pools, chunk: int = 20_000) -> dict:
    """Append entries up to ``target`` with COPY, exactly as log.append would have written them.

    Version 2 entries about the seeded items, each with ``prev`` (index and
    leaf hash of the previous entry about its item, from the log as it stands
    and then from the entries made here) and the log key's signature over
    signing.entry_message(leaf hash). One transaction holds the head lock: the
    leaves are folded into the frontier, the completed nodes collected, both
    tables COPYed, then the head set. ~40 us per entry in this one process
    (a quarter of it the Ed25519 signature).
    """
    from hashlib import sha256
    from json import dumps

    import psycopg

    from custody import keys, log, merkle
    from custody.merkle import append_to_frontier as append
    from custody.models import SigningKey
    from custody.signing import canonical_json, entry_message

    signer = keys.active_private_key(SigningKey.Purpose.LOG)[1]  # the key log.append signs with
    message = entry_message
    t0 = time.perf_counter()
    step = ENTRY_STEP
    leaf_bytes = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        first, frontier = cur.execute(
            "SELECT size, frontier FROM custody_loghead WHERE id = 1 FOR UPDATE"
        ).fetchone()
        base = cur.execute("SELECT max(time) FROM custody_logentry").fetchone()[0] or dt.datetime.now(dt.UTC)
        prev = {  # item -> (index, leaf hash hex) of its latest entry
            eid: (index, bytes(h).hex())
            for eid, index, h in cur.execute(
                "SELECT DISTINCT ON (evidence_id) evidence_id, index, leaf_hash FROM custody_logentry "
                "WHERE evidence_id IS NOT NULL ORDER BY evidence_id, index DESC"
            )
        }
        frontier = log._split(bytes(frontier))
        rng = random.Random(first)
        size = first
        for start in range(first, target, chunk):
            rows, nodes = [], []
            for index in range(start, min(start + chunk, target)):
                when = base + step * (index - first + 1)
                f = entry_fields(rng, pools)
                eid = f["ids"][3]
                last = prev.get(eid)
                entry = entry_dict(index, when, f, {"index": last[0], "hash": last[1]} if last else None)
                # signing.canonical_json minus its float check (these entries hold no
                # floats), which is half of its time; checked against it every 1000th
                # entry here, and verify_log checks every leaf's canonical form.
                leaf = dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
                if index % 1000 == 0 and leaf != canonical_json(entry):
                    raise AssertionError(f"bulk leaf {index} is not what log.append would build")
                leaf_bytes += len(leaf)
                h = sha256(b"\x00" + leaf).digest()  # merkle.leaf_hash
                prev[eid] = (index, h.hex())
                rows.append((index, leaf, h, when, *f["ids"], signer.sign(message(h))))
                frontier, done = append(frontier, index, h)
                nodes.extend(n for n in done if n[0] > 0)
            size = min(start + chunk, target)
            with cur.copy(LEAF_COPY) as copy:
                copy.set_types(LEAF_TYPES)
                for row in rows:
                    copy.write_row(row)
            with cur.copy(NODE_COPY) as copy:
                copy.set_types(NODE_TYPES)
                for row in nodes:
                    copy.write_row(row)
        cur.execute(
            "UPDATE custody_loghead SET size = %s, frontier = %s, root = %s WHERE id = 1",
            (size, b"".join(frontier), merkle.root_from_frontier(frontier)),
        )
    load = time.perf_counter() - t0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) custody_logentry, custody_treenode")
    return {
        "loaded": size - first,
        "seconds": load,
        "vacuum": time.perf_counter() - t0 - load,
        "avg_leaf": leaf_bytes / max(1, size - first),
    }


# --- proofs and verification ----------------------------------------------------------


def time_calls(calls) -> list[float]:
    out = []
    for fn, args in calls:
        t0 = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t0)
    return out


def bench_proofs(size: int, count: int, prototypes: bool) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from custody import log, merkle
    from custody.models import LogEntry

    rng = random.Random(99)
    root = log.tree_head()[1]
    inc = [(rng.randrange(size), size) for _ in range(count)]
    con = []
    for _ in range(count):
        second = rng.randrange(2, size + 1)
        con.append((rng.randrange(1, second), second))
    pk = [(rng.randrange(size),) for _ in range(count)]

    def lookup(i):
        return LogEntry.objects.filter(index=i).values_list("leaf_hash", flat=True).first()

    # Warm: connection, plans, the upper tree levels in shared buffers.
    time_calls([(log.inclusion_proof, a) for a in inc[:50]] + [(log.consistency_proof, a) for a in con[:50]])
    time_calls([(lookup, a) for a in pk[:50]])
    res = {
        "pk": time_calls([(lookup, a) for a in pk]),
        "inclusion": time_calls([(log.inclusion_proof, a) for a in inc]),
        "consistency": time_calls([(log.consistency_proof, a) for a in con]),
    }
    if prototypes:
        time_calls([(proto_inclusion, a) for a in inc[:50]])
        res["proto_inclusion"] = time_calls([(proto_inclusion, a) for a in inc])
        res["proto_consistency"] = time_calls([(proto_consistency, a) for a in con])

    # Correctness of what was timed (untimed): 200 inclusion proofs, 100 consistency proofs.
    hashes = dict(
        LogEntry.objects.filter(index__in=[i for i, _ in inc[:200]]).values_list("index", "leaf_hash")
    )
    bad = sum(
        not merkle.verify_inclusion(bytes(hashes[i]), i, n, log.inclusion_proof(i, n), root)
        for i, n in inc[:200]
    )
    bad += sum(
        not merkle.verify_consistency(a, b, log.root_at(a), log.root_at(b), log.consistency_proof(a, b))
        for a, b in con[:100]
    )
    if prototypes:
        bad += sum(proto_inclusion(i, n) != log.inclusion_proof(i, n) for i, n in inc[:100])
        bad += sum(proto_consistency(a, b) != log.consistency_proof(a, b) for a, b in con[:100])
    res["bad"] = bad

    # Queries per proof, and stored nodes per proof.
    for name, fn, shape, args in (
        ("inclusion", log.inclusion_proof, merkle.inclusion_nodes, inc[:100]),
        ("consistency", log.consistency_proof, merkle.consistency_nodes, con[:100]),
    ):
        per = []
        for a in args:
            with CaptureQueriesContext(connection) as q:
                fn(*a)
            per.append(len(q.captured_queries))
        res[f"{name}_queries"] = max(per)
        res[f"{name}_nodes"] = max(len(shape(*a)) for a in args)

    # Through Django (middleware, DRF view, JSON), no network: the test client.
    client = Client(SERVER_NAME="localhost")
    http_n = min(count, 300)
    for path in ("/api/v1/log/proof/inclusion/", "/api/v1/log/proof/consistency/"):
        r = client.get(
            path, {"index": 0, "size": size} if "inclusion" in path else {"first": 1, "second": size}
        )
        if r.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {r.status_code} {r.content[:200]!r}")

    def get(path, params):
        r = client.get(path, params)
        if r.status_code != 200:
            raise RuntimeError(f"{path} {params}: HTTP {r.status_code} {r.content[:200]!r}")

    res["http_inclusion"] = time_calls(
        [(get, ("/api/v1/log/proof/inclusion/", {"index": i, "size": n})) for i, n in inc[:http_n]]
    )
    res["http_consistency"] = time_calls(
        [(get, ("/api/v1/log/proof/consistency/", {"first": a, "second": b})) for a, b in con[:http_n]]
    )
    return res


def verify_floor(url: str) -> float:
    """Floor for verify_log: stream every leaf from the server and SHA-256 it (one client, no checks)."""
    import hashlib

    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor(name="floor") as cur:
        cur.itersize = 5000
        cur.execute("SELECT index, leaf, leaf_hash FROM custody_logentry ORDER BY index")
        for _, leaf, _ in cur:
            hashlib.sha256(b"\x00" + leaf).digest()
    return time.perf_counter() - t0


def run_measured(command: list[str], env: dict) -> dict:
    """Run ``manage.py <command>``: wall time, peak RSS (VmHWM sampled every 10 ms), output.

    Not getrusage: Linux carries ru_maxrss across fork and exec, so a child of
    this (large) process would report at least this process's RSS.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.01)
    output = proc.stdout.read().decode()
    proc.stdout.close()
    return {
        "seconds": time.perf_counter() - t0,
        "rss_mb": peak / 1024,
        "code": proc.returncode,
        "output": output.strip(),
    }


def _verdict(output: str) -> str:
    """The OK / FAILED line of verify_log's output, and its first problem."""
    lines = output.splitlines()
    found = [line for line in lines if line.startswith(("OK:", "FAILED:"))]
    problems = [line for line in lines if line.startswith("PROBLEM:")]
    return "; ".join(found[-1:] + problems[:2]) or (lines[-1] if lines else "(no output)")


def run_verify_log(env: dict) -> dict:
    """``manage.py verify_log --skip-blobs --quiet`` in its own process."""
    res = run_measured(["verify_log", "--skip-blobs", "--quiet"], env)
    res["ok"] = res["code"] == 0 and "OK:" in res["output"]
    return res


def fetch_nodes_one_query(wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """PROTOTYPE of log.fetch_nodes: one raw query, the wanted nodes joined from a VALUES list.

    log.fetch_nodes builds an OR of ~20-40 Q objects; compiling that in the ORM
    is most of a proof's time. Same result, same LookupError on a missing node.
    Portable: PostgreSQL and SQLite both plan it as one unique-index probe per
    wanted node (a row-value ``IN (VALUES ...)`` is a full scan on SQLite).
    """
    from django.db import connection

    from custody.models import LogEntry, TreeNode

    q = connection.ops.quote_name
    leaves = sorted(i for level, i in wanted if level == 0)
    inner = sorted((level, i) for level, i in wanted if level > 0)
    # Only quoted identifiers and placeholders are put into the SQL text.
    entry_t, node_t, idx, level = (
        q(LogEntry._meta.db_table),
        q(TreeNode._meta.db_table),
        q("index"),
        q("level"),
    )
    with_, parts, params = "", [], []
    if inner:
        with_ = f"WITH w (l, i) AS (VALUES {', '.join(['(%s, %s)'] * len(inner))}) "
        params += [v for node in inner for v in node]
        join = f"w JOIN {node_t} t ON t.{level} = w.l AND t.{idx} = w.i"
        parts.append(f"SELECT t.{level}, t.{idx}, t.{q('hash')} FROM {join}")  # noqa: S608
    if leaves:
        marks = ", ".join(["%s"] * len(leaves))
        parts.append(f"SELECT 0, {idx}, {q('leaf_hash')} FROM {entry_t} WHERE {idx} IN ({marks})")  # noqa: S608
        params += leaves
    found: dict[tuple[int, int], bytes] = {}
    if parts:
        with connection.cursor() as cursor:
            cursor.execute(with_ + " UNION ALL ".join(parts), params)
            for lvl, index, h in cursor.fetchall():
                found[(lvl, index)] = bytes(h)
    missing = wanted - found.keys()
    if missing:
        raise LookupError(f"log tree nodes missing from the database: {sorted(missing)[:5]}")
    return found


def proto_inclusion(index: int, size: int) -> list[bytes]:
    from custody import merkle

    return merkle.inclusion_proof(index, size, fetch_nodes_one_query(merkle.inclusion_nodes(index, size)))


def proto_consistency(first: int, second: int) -> list[bytes]:
    from custody import merkle

    return merkle.consistency_proof(
        first, second, fetch_nodes_one_query(merkle.consistency_nodes(first, second))
    )


# --- main ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size for proofs and verify")
    parser.add_argument(
        "--small-entries", type=int, default=100_000, help="first verify_log size, for the memory ratio"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=CHECKPOINT_EVERY,
        help="sign a checkpoint every N bulk-loaded entries (default: every 60 s of log time, as the "
        "beat does); 0: only at the end of each load",
    )
    parser.add_argument("--items", type=int, default=1000, help="evidence items made through the services")
    parser.add_argument("--writers", type=int, default=8, help="concurrent appending processes")
    parser.add_argument("--seconds", type=float, default=10, help="length of each append run")
    parser.add_argument("--proofs", type=int, default=1000, help="timed proofs of each kind")
    parser.add_argument("--no-prototypes", action="store_true", help="only the app and the baseline")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/", help="server (trust auth)")
    parser.add_argument("--db-prefix", default="custody_bench", help="database name: PREFIX_<pid>")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir")
    args = parser.parse_args()

    import psycopg

    server = args.pg.rstrip("/")
    dbname = f"{args.db_prefix}_{os.getpid()}"
    url = f"{server}/{dbname}"
    data_dir = Path(tempfile.mkdtemp(prefix="custody-bench-log-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="custody.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(32),
        CUSTODY_DATA_DIR=str(data_dir),
        CUSTODY_KEY_PASSPHRASE=secrets.token_urlsafe(16),
        CUSTODY_KEY_SCRYPT_N=str(2**10),
        CUSTODY_PUBLIC_RATE="100000000/min",  # the public endpoints' throttle would answer 429s
        DATABASE_URL=url,
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
        pg_version = admin.execute("SHOW server_version").fetchone()[0]
        pg_settings = ", ".join(
            f"{name}={admin.execute(f'SHOW {name}').fetchone()[0]}"
            for name in ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "commit_delay")
        )
    started = time.perf_counter()
    try:
        return run(args, server, dbname, pg_version, pg_settings, started)
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            proto = "" if args.no_prototypes else f" and {dbname}_proto"
            print(f"kept: database {dbname}{proto}, data dir {data_dir}")
        else:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}_proto" WITH (FORCE)')
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            shutil.rmtree(data_dir, ignore_errors=True)


def run(args, server: str, dbname: str, pg_version: str, pg_settings: str, started: float) -> int:
    import django
    import psycopg

    url = f"{server}/{dbname}"
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from custody import audit, log, services
    from custody.models import Checkpoint
    from custody.signing import canonical_json

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    call_command("migrate", verbosity=0)
    services.ensure_signing_keys()
    say(f"seeding users, cases and {args.items} evidence items through the services")
    t0 = time.perf_counter()
    seed_custody(random.Random(5), users=12, cases=max(1, args.items // 25), items=args.items)
    seed_seconds, seeded = time.perf_counter() - t0, log.tree_head()[0]
    pools = _POOLS["pools"] = Pools(random.Random(42))
    with connection.cursor() as c:
        for sql in PROTOTYPE_SQL:
            c.execute(sql)
    # The prototypes' leaves must be log.append's bytes exactly.
    sample = entry_dict(123, dt.datetime.now(dt.UTC), entry_fields(random.Random(1), pools))
    prefix, suffix = split_leaf(sample)
    assert prefix + b"123" + suffix == canonical_json(sample)
    proto_url = f"{url}_proto"
    if not args.no_prototypes:
        # The prototypes write entries that are not the app's (no signature, no
        # prev): they run on a copy, so the log verified below is the app's alone.
        connections.close_all()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}_proto" TEMPLATE "{dbname}"')

    n = args.writers
    runs = []
    plan = [
        ("baseline", n),
        ("baseline", 1),
        ("baseline-atomic", n),
        ("app", n),
        ("app", 1),
        ("app-wait", n),
        ("app-wait", 1),
        ("app-direct", n),
        ("app-direct", 1),
    ]
    if not args.no_prototypes:
        plan += [("app-async", n), ("function", n), ("function-pipelined", n)]
    app_ranges = []  # [start, end) of the indexes the app's own append wrote
    for kind, writers in plan:
        on = url if kind.startswith("baseline") or kind in APP_KINDS else proto_url
        say(f"append run: {kind}, {writers} writer(s), {args.seconds:g} s")
        start = log.tree_head()[0]
        connection.close()  # nothing open across the writers' fork
        runs.append(run_writers(kind, on, writers, args.seconds))
        if kind in APP_KINDS:  # run_writers drained what was still queued
            app_ranges.append((start, log.tree_head()[0]))
    appended = log.tree_head()[0]
    say(f"audit.verify of the {appended} entries so far")
    t0 = time.perf_counter()
    report = audit.verify(check_blobs=False)
    small_verify = time.perf_counter() - t0
    with connection.cursor() as c:
        c.execute(
            "SELECT count(*), min(index), max(index), count(*) FILTER (WHERE time < prev) "
            "FROM (SELECT index, time, lag(time) OVER (ORDER BY index) AS prev FROM custody_logentry) t"
        )
        rows, lo, hi, inversions = c.fetchone()
        # The app takes an entry's time under the head lock: within its runs
        # times never go backwards.
        app_inversions = 0
        for start, end in app_ranges:
            c.execute(
                "SELECT count(*) FILTER (WHERE time < prev) FROM (SELECT time, lag(time) OVER "
                "(ORDER BY index) AS prev FROM custody_logentry WHERE index >= %s AND index < %s) t",
                [start, end],
            )
            app_inversions += c.fetchone()[0]
    dense = rows == appended and lo == 0 and hi == appended - 1

    env = dict(os.environ)
    target = max(args.entries, appended)
    sizes = [x for x in (args.small_entries,) if appended < x < target] + [target]
    verifies = []  # per size: load, verify_log, floor
    for goal in sizes:
        say(f"bulk load (COPY) up to {goal} entries")
        connections.close_all()
        before = log.tree_head()[0]
        load = bulk_load(url, goal, pools)
        if args.checkpoint_every:
            for at in range(
                (before // args.checkpoint_every + 1) * args.checkpoint_every, goal, args.checkpoint_every
            ):
                log.checkpoint_at(at)
        checkpoint = log.latest_checkpoint()
        size = log.tree_head()[0]
        # The bulk-loaded entries' times run ahead of the clock (ENTRY_STEP
        # apart), so these checkpoints were signed "before" the entries they
        # cover, which verify_log rightly reports: move each one's created_at
        # to just after its newest entry, as bench/verify.py build does.
        with psycopg.connect(url) as conn:
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "UPDATE custody_checkpoint c SET created_at = e.time + interval '1 millisecond' "
                "FROM custody_logentry e WHERE e.index = c.size - 1 AND c.created_at < e.time"
            )
        if goal == target:
            say(f"proofs at size {size}")
            proofs = bench_proofs(size, args.proofs, not args.no_prototypes)
        say(f"verify floor at {size}: stream + SHA-256 every leaf")
        connections.close_all()
        floor = verify_floor(url)
        say(f"manage.py verify_log --skip-blobs at {size}")
        verifies.append(
            {
                "size": size,
                "load": load,
                "floor": floor,
                "checkpoints": Checkpoint.objects.count(),
                **run_verify_log(env),
            }
        )
    base_rss = run_measured(["check"], env)["rss_mb"]
    checkpoints = Checkpoint.objects.count()
    verify = verifies[-1]

    # --- report ---------------------------------------------------------------------------
    by = {(r["kind"], r["writers"]): r for r in runs}
    base_n, base_1 = by[("baseline", n)], by[("baseline", 1)]
    app_n, direct_1, direct_n = by[("app", n)], by[("app-direct", 1)], by[("app-direct", n)]
    labels = {
        "baseline": "baseline: autocommit INSERT",
        "baseline-atomic": "baseline: atomic() + INSERT",
        "app": "app: atomic() + log.append()",
        "app-wait": "app, waiting for the index",
        "app-direct": "app, direct (CUSTODY_LOG_QUEUE=0)",
        "app-async": "PROTO direct, sync_commit=off",
        "function": "PROTO PL/pgSQL append (3 RT)",
        "function-pipelined": "PROTO PL/pgSQL append, pipelined",
    }
    print(f"custody log benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"machine:    {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
    )
    print(f"python:     {platform.python_version()}; Django {django.get_version()}")
    print(f"postgresql: {pg_version} on 127.0.0.1 ({pg_settings})")
    print(
        f"load:       1/5/15-min load average at start {load_at_start}, at end {os.getloadavg()[0]:.2f} "
        "(the machine is shared; 'other' below is the share not ours)"
    )
    print()
    print(
        f"Appends ({args.seconds:g} s per run; each writer a process with its own connection; "
        "latency = one append incl. commit)"
    )
    print(
        f"  {'run':<34} {'writers':>7} {'appends/s':>10} {'vs base':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'client':>7} {'backend':>7} {'other':>6}"
    )
    print(f"  {'':<34} {'':>7} {'':>10} {'':>8} {'':>7} {'':>7} {'CPU us/op':>15} {'cores':>6}")
    for r in runs:
        base = by[("baseline", r["writers"])]
        count = max(1, r["count"])
        other = r["cores_busy"] - (r["client_cpu"] + r["server_cpu"]) / r["wall"]
        print(
            f"  {labels[r['kind']]:<34} {r['writers']:>7} {r['rate']:>10.0f} {r['rate'] / base['rate']:>8.2f} "
            f"{ms(r['p50'])} {ms(r['p99'])} {r['client_cpu'] / count * 1e6:>7.0f} "
            f"{r['server_cpu'] / count * 1e6:>7.0f} {other:>6.2f}"
        )
    print(
        "  (client / backend: CPU of the writer processes / their PostgreSQL backends per append; other: "
        "cores busy with anything else - WAL writer, other load on the machine)"
    )
    print()
    print(
        "  queued entries (app runs): indexed while the clock ran, left queued when it stopped, batches "
        "the appenders sequenced after their COMMITs; lag = the entry's time (given with its index, "
        "under the head lock) minus its action's COMMIT; wait = COMMIT to the entry read back with its index"
    )
    for r in runs:
        if r["kind"] in ("app", "app-wait"):
            lag = r["waits"] if r["kind"] == "app-wait" else r["lag"]
            print(
                f"    {labels[r['kind']]:<31} {r['writers']} writer(s): {r['indexed']} indexed "
                f"({r['indexed'] / r['wall']:.0f}/s), {r['backlog']} left queued ({r['drained']} drained "
                f"after), {r['lost']} lost; {r['batches']} batches, mean {r['batch_mean']:.1f}, "
                f"max {r['batch_max']}; {'wait' if r['kind'] == 'app-wait' else 'lag'} "
                f"p50 {pct(lag, 0.5) * 1000:.1f} ms, p99 {pct(lag, 0.99) * 1000:.1f} ms"
            )
    print()
    print("  where a direct append's time goes (per append, mean):")
    for r in (direct_1, direct_n):
        c = r["count"]
        print(
            f"    {r['writers']} writer(s): head lock wait {r['wait'] / c * 1e3:.3f} ms (incl. BEGIN), "
            f"lock held {r['hold'] / c * 1e3:.3f} ms (of it COMMIT {r['commit'] / c * 1e3:.3f} ms, "
            f"{r['locked_statements'] / c:.2f} statements after the lock), "
            f"{r['statements'] / c:.2f} statements + BEGIN + COMMIT round trips; "
            f"lock busy {r['hold'] / r['wall'] * 100:.0f}% of wall time"
        )
    print(f"    1 writer, baseline INSERT (one round trip + commit): {base_1['p50'] * 1000:.3f} ms p50")
    print(
        f"  check: audit.verify of the {appended} entries so far (seed + the app's runs): "
        f"{'OK' if report.ok else 'PROBLEMS: ' + '; '.join(report.problems[:3])} ({small_verify:.1f} s); "
        f"indexes dense 0..{appended - 1}: {'yes' if dense else 'NO'}; "
        f"entries whose time is earlier than the previous entry's: {app_inversions} in the app's runs, "
        f"{inversions} in all"
    )
    if not args.no_prototypes:
        print("  (the PROTO runs appended to a copy of the database, made after the seed: not verified)")
    print()
    loaded = sum(v["load"]["loaded"] for v in verifies)
    print(
        f"Log of {size} entries: {seeded} from the seed ({args.items} items, 12 users, "
        f"{max(1, args.items // 25)} cases made through the services in {seed_seconds:.0f} s), "
        f"{appended - seeded} appended above, {loaded} BULK-LOADED with COPY: version {log.ENTRY_VERSION} "
        f"entries as log.append writes them (evidence.viewed / downloaded, fixity.checked, access.refused "
        f"about the seeded items, which change no table), each with its item's prev link and signed "
        f"by the log key; mean leaf {verify['load']['avg_leaf']:.0f} bytes; "
        + ", ".join(
            f"to {v['size']}: {v['load']['seconds']:.0f} s + VACUUM ANALYZE {v['load']['vacuum']:.0f} s"
            for v in verifies
        )
        + f"; {checkpoints} checkpoints signed (every {args.checkpoint_every or 'load'} entries, "
        f"as the beat signs one per minute), the last at {checkpoint.size}"
    )
    print(
        f"  {'proof (' + str(args.proofs) + ' random)':<40} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'vs PK lookup p50':>16}  target p99 < {TARGET_PROOF_MS:g} ms"
    )
    pk50 = statistics.median(proofs["pk"])
    rows_out = [
        ("PK lookup of one leaf hash (baseline)", proofs["pk"], None),
        ("log.inclusion_proof(i, size)", proofs["inclusion"], True),
        ("log.consistency_proof(a, b)", proofs["consistency"], True),
        ("PROTO inclusion, fetch in 1 raw query", proofs.get("proto_inclusion"), None),
        ("PROTO consistency, fetch in 1 raw query", proofs.get("proto_consistency"), None),
        ("GET .../proof/inclusion/ (test client)", proofs["http_inclusion"], None),
        ("GET .../proof/consistency/ (test client)", proofs["http_consistency"], None),
    ]
    ok_proofs = True
    for label, xs, judged in rows_out:
        if not xs:
            continue
        verdict = ""
        if judged:
            passed = pct(xs, 0.99) * 1000 < TARGET_PROOF_MS
            ok_proofs &= passed
            verdict = "PASS" if passed else "FAIL"
        print(
            f"  {label:<40} {ms(statistics.median(xs))} {ms(pct(xs, 0.99))} {ms(max(xs))} "
            f"{statistics.median(xs) / pk50:>16.1f}  {verdict}"
        )
    print(
        f"  queries per proof (max of 100): inclusion {proofs['inclusion_queries']} "
        f"({proofs['inclusion_nodes']} stored nodes), consistency {proofs['consistency_queries']} "
        f"({proofs['consistency_nodes']} stored nodes); proofs checked with merkle.verify_*: "
        f"{'all valid' if proofs['bad'] == 0 else str(proofs['bad']) + ' INVALID'}"
    )
    print()
    print(
        "  manage.py verify_log --skip-blobs, in its own process (peak RSS: its VmHWM; "
        f"manage.py check peaks at {base_rss:.0f} MB); floor: stream every leaf with one psycopg "
        "server-side cursor and SHA-256 it"
    )
    print(
        f"  {'entries':>9} {'checkpoints':>11} {'wall s':>8} {'entries/s':>10} {'peak RSS MB':>12} {'floor s':>8} "
        f"{'vs floor':>8}  result"
    )
    for v in verifies:
        print(
            f"  {v['size']:>9} {v['checkpoints']:>11} {v['seconds']:>8.1f} {v['size'] / v['seconds']:>10.0f} {v['rss_mb']:>12.0f} "
            f"{v['floor']:>8.1f} {v['seconds'] / v['floor']:>8.1f}  "
            f"{'OK' if v['ok'] else 'FAILED: ' + _verdict(v['output'])}"
        )
    print(f"  verify_log at {verify['size']}: {verify['output'].splitlines()[0] if verify['output'] else ''}")
    if len(verifies) > 1:
        a, b = verifies[0], verifies[-1]
        print(
            f"  {b['size']} vs {a['size']} entries ({b['size'] / a['size']:.1f} x): peak RSS "
            f"{b['rss_mb'] / a['rss_mb']:.2f} x (bounded memory: ~1), wall time {b['seconds'] / a['seconds']:.1f} x "
            f"(linear: {b['size'] / a['size']:.1f})"
        )
    print()
    # Appends count only as far as the log kept up with them: the slower of
    # committed actions/s and entries indexed/s while the clock ran.
    kept = min(app_n["rate"], app_n["indexed"] / app_n["wall"])
    ok_appends = kept >= TARGET_APPENDS
    lost = sum(r.get("lost", 0) for r in runs)
    print(
        f"RESULT appends: {app_n['rate']:.0f}/s with {n} writers, {app_n['indexed'] / app_n['wall']:.0f}/s "
        f"indexed ({kept / base_n['rate']:.2f} x plain INSERTs/s {base_n['rate']:.0f}, "
        f"{kept / by[('baseline-atomic', n)]['rate']:.2f} x atomic() + INSERT "
        f"{by[('baseline-atomic', n)]['rate']:.0f}/s; direct append "
        f"{direct_n['rate']:.0f}/s); COMMIT to index lag p50 {pct(app_n['lag'], 0.5) * 1000:.1f} ms, "
        f"p99 {pct(app_n['lag'], 0.99) * 1000:.1f} ms; target >= {TARGET_APPENDS}/s: "
        f"{'PASS' if ok_appends else 'FAIL'}"
    )
    print(
        f"RESULT proofs at {size}: inclusion p99 {pct(proofs['inclusion'], 0.99) * 1000:.2f} ms, "
        f"consistency p99 {pct(proofs['consistency'], 0.99) * 1000:.2f} ms, target < {TARGET_PROOF_MS:g} ms: "
        f"{'PASS' if ok_proofs else 'FAIL'}"
    )
    ratio = (
        f", peak RSS {verify['rss_mb'] / verifies[0]['rss_mb']:.2f} x that at {verifies[0]['size']}"
        if len(verifies) > 1
        else ""
    )
    print(
        f"RESULT verify_log at {size}: {verify['seconds']:.1f} s ({size / verify['seconds']:.0f} entries/s, "
        f"{verify['seconds'] / verify['floor']:.1f} x the floor), peak RSS {verify['rss_mb']:.0f} MB{ratio} "
        f"({'OK' if all(v['ok'] for v in verifies) else 'FAILED'})"
    )
    print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    sane = report.ok and dense and lost == 0 and all(v["ok"] for v in verifies) and proofs["bad"] == 0
    return 0 if sane and ok_appends and ok_proofs else 1


if __name__ == "__main__":
    sys.exit(main())
