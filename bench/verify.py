#!/usr/bin/env python
"""verify_log benchmark on PostgreSQL: wall time and peak RSS at 1M entries against a floor.

    python bench/verify.py build [--entries 1000000] [--items 1000] [--db-prefix custody_verify]
    python bench/verify.py measure STATE.json [--baseline CHECKOUT] [--repeat 1]
    python bench/verify.py drop STATE.json
    python bench/verify.py signatures [--count 20000]

``build`` makes a database ``<db-prefix>_<pid>`` and a data dir as bench/log.py
does (migrate, signing keys, ``--items`` evidence items through the services),
bulk-loads it to ``--entries`` with bench/log.py's ``bulk_load`` (version 2
entries built as ``log.append`` builds them, each signed and chained to its
item), signs a checkpoint every 60 s of log time (as the beat does) and
writes STATE.json (the database URL and the settings verify_log needs). It is
kept until ``drop``.

``measure`` runs, in this order and in one session: the floor (stream every
leaf over one server-side cursor and SHA-256 it: no checks), ``manage.py
verify_log --skip-blobs --quiet --no-witnesses`` of this checkout, and with
``--baseline`` the same command from another checkout (e.g. /work/main, the
code before a change) on the same database. Each verify_log runs in its own
process: wall time, peak RSS (VmHWM sampled every 10 ms), CPU time of it and
its children (worker processes), and its verdict, which must be OK or the
timing means nothing. Prints the ratios to the floor and the load average
before and after each step (the machine is shared).

``signatures`` times the check verify_log makes of each entry's signature
(custody/entrysigs.py ``check_chunk``, libsodium through PyNaCl) against
the same checks through ``cryptography`` (OpenSSL), on the same ``--count``
signed leaf hashes in this process, alternating three times; no database.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)


def _bench_log():
    """bench/log.py as a module (its loader and seed are reused, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_log", ROOT / "bench" / "log.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path[0] = str(ROOT)
    return module


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def say(text: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


# --- build ------------------------------------------------------------------------------


def build(args) -> int:
    import psycopg

    bench = _bench_log()
    server = args.pg.rstrip("/")
    dbname = f"{args.db_prefix}_{os.getpid()}"
    url = f"{server}/{dbname}"
    data_dir = Path(tempfile.mkdtemp(prefix="custody-bench-verify-"))
    env = {
        "DJANGO_SETTINGS_MODULE": "custody.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "CUSTODY_DATA_DIR": str(data_dir),
        "CUSTODY_KEY_PASSPHRASE": secrets.token_urlsafe(16),
        "CUSTODY_KEY_SCRYPT_N": str(2**10),
        "DATABASE_URL": url,
    }
    os.environ.update(env)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    state = Path(args.state or f"{dbname}.json").resolve()
    state.write_text(json.dumps({"url": url, "server": server, "dbname": dbname, "env": env}, indent=1))
    say(f"database {dbname}, data dir {data_dir}, state {state}")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from custody import log, services

    call_command("migrate", verbosity=0)
    services.ensure_signing_keys()
    say(f"seeding {args.items} evidence items through the services")
    bench.seed_custody(random.Random(5), users=12, cases=max(1, args.items // 25), items=args.items)
    pools = bench.Pools(random.Random(42))
    say(f"bulk load (COPY) up to {args.entries} entries")
    before = log.tree_head()[0]
    connections.close_all()
    loaded = bench.bulk_load(url, args.entries, pools)
    every = bench.CHECKPOINT_EVERY
    for at in range((before // every + 1) * every, args.entries, every):
        log.checkpoint_at(at)
    log.latest_checkpoint()
    # The loaded entries' times run ahead of the clock (one every 137 ms of log
    # time); a checkpoint is created after its newest entry, as the beat would
    # have made it: its time is a column, not part of the signed note. (The
    # table refuses updates by trigger; replica mode skips triggers.)
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "UPDATE custody_checkpoint c SET created_at = e.time + interval '1 millisecond' "
            "FROM custody_logentry e WHERE e.index = c.size - 1 AND c.created_at < e.time"
        )
    say(f"loaded {loaded['loaded']} entries in {loaded['seconds']:.0f} s; state in {state}")
    print(state)
    return 0


def drop(args) -> int:
    import psycopg

    state = json.loads(Path(args.state).read_text())
    with psycopg.connect(f"{state['server']}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{state["dbname"]}" WITH (FORCE)')
    shutil.rmtree(state["env"]["CUSTODY_DATA_DIR"], ignore_errors=True)
    Path(args.state).unlink()
    return 0


# --- measure ----------------------------------------------------------------------------


def floor(url: str) -> float:
    """Stream every leaf with one server-side cursor and SHA-256 it: bench/log.py's verify_floor."""
    return _bench_log().verify_floor(url)


def verify_log(checkout: Path, env: dict) -> dict:
    """``manage.py verify_log --skip-blobs --quiet --no-witnesses`` of ``checkout`` in its own process.

    Peak RSS: the VmHWM of the command and of each of its children (worker
    processes), sampled every 10 ms; the largest single process and the
    largest sum seen at one time.
    """
    command = [sys.executable, str(checkout / "manage.py"), "verify_log", "--skip-blobs", "--quiet"]
    command.append("--no-witnesses")
    started_load = os.getloadavg()[0]
    t0 = time.perf_counter()
    before = os.times()
    proc = subprocess.Popen(
        command,
        cwd=checkout,
        env={**os.environ, **env, "PYTHONPATH": str(checkout)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peak = peak_sum = 0
    while proc.poll() is None:
        pids = [proc.pid, *_children(proc.pid)]
        marks = [_hwm(pid) for pid in pids]
        peak = max(peak, *marks)
        peak_sum = max(peak_sum, sum(marks))
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    after = os.times()
    output = proc.stdout.read().decode()
    proc.stdout.close()
    lines = output.strip().splitlines()
    verdict = [line for line in lines if line.startswith(("OK:", "FAILED:"))]
    problems = [line for line in lines if line.startswith("PROBLEM:")]
    return {
        "seconds": wall,
        "cpu": (after.children_user + after.children_system)
        - (before.children_user + before.children_system),
        "rss_mb": peak / 1024,
        "rss_sum_mb": peak_sum / 1024,
        "ok": proc.returncode == 0 and bool(verdict) and verdict[-1].startswith("OK:"),
        "verdict": "; ".join(verdict[-1:] + problems[:2]) or (lines[-1] if lines else "(no output)"),
        "counts": next((line for line in lines if " entries, " in line), ""),
        "load": (started_load, os.getloadavg()[0]),
    }


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    return found


def _hwm(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _git(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True, text=True
        ).stdout.strip()[:70]
    except OSError:
        return "?"


def measure(args) -> int:
    import psycopg

    state = json.loads(Path(args.state).read_text())
    url, env = state["url"], state["env"]
    with psycopg.connect(url) as conn:
        entries = conn.execute("SELECT size FROM custody_loghead WHERE id = 1").fetchone()[0]
        checkpoints = conn.execute("SELECT count(*) FROM custody_checkpoint").fetchone()[0]
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    bench = _bench_log()
    runs = [("this checkout", ROOT)] + (
        [("baseline", Path(args.baseline).resolve())] if args.baseline else []
    )
    load_start = load()
    say(f"floor: stream + SHA-256 every leaf of {entries} entries")
    floors = [floor(url)]
    results = []
    for _ in range(args.repeat):
        for label, checkout in runs:
            say(f"verify_log of {label} ({checkout}), load {load()}")
            results.append((label, checkout, verify_log(checkout, env)))
    say("floor again")
    floors.append(floor(url))
    base = min(floors)

    print(f"verify_log benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"machine:    {platform.machine()}, {bench.cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, PostgreSQL {pg_version}"
    )
    print(f"load:       1/5/15-min load average at start {load_start}, at end {load()} (shared machine)")
    print(f"log:        {entries} entries, {checkpoints} checkpoints ({state['dbname']})")
    print(
        f"floor:      stream + SHA-256 every leaf, one server-side cursor: "
        f"{' / '.join(f'{f:.1f} s' for f in floors)} (before / after; ratios below use {base:.1f} s)"
    )
    print()
    print(
        f"  {'code':<14} {'commit':<50} {'wall':>7} {'entries/s':>10} {'x floor':>8} {'CPU s':>7} "
        f"{'RSS MB':>7} {'sum MB':>7} {'load':>11}  verdict"
    )
    for label, checkout, r in results:
        print(
            f"  {label:<14} {_git(checkout):<50.50} {r['seconds']:>6.1f}s {entries / r['seconds']:>10,.0f} "
            f"{r['seconds'] / base:>8.1f} {r['cpu']:>7.1f} {r['rss_mb']:>7.0f} {r['rss_sum_mb']:>7.0f} "
            f"{r['load'][0]:>5.2f}-{r['load'][1]:<5.2f} {r['verdict']}"
        )
    print(
        "  (RSS MB: peak of the largest process; sum MB: peak of the command and its worker "
        "processes together; CPU s: user + system of the command and its children)"
    )
    if len(runs) == 2:
        mine = [r["seconds"] for label, _, r in results if label == "this checkout"]
        theirs = [r["seconds"] for label, _, r in results if label == "baseline"]
        print(f"  baseline / this checkout: {min(theirs) / min(mine):.2f} x (best of each)")
    return 0 if all(r["ok"] for _, _, r in results) else 1


def signatures(args) -> int:
    import hashlib
    import statistics

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from custody import entrysigs, signing

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    hashes = [hashlib.sha256(n.to_bytes(8, "big")).digest() for n in range(args.count)]
    sigs = [key.sign(signing.entry_message(h)) for h in hashes]
    task = ([(raw,)], list(range(args.count)), b"".join(hashes), sigs, [0] * args.count)

    def with_openssl() -> list[int]:
        bad = []
        for n, h in enumerate(hashes):
            try:
                public.verify(sigs[n], signing.entry_message(h))
            except Exception:  # noqa: BLE001 - counted as bad
                bad.append(n)
        return bad

    times: dict[str, list[float]] = {"libsodium (entrysigs)": [], "OpenSSL (cryptography)": []}
    for _ in range(3):
        for name, run in (
            ("libsodium (entrysigs)", lambda: entrysigs.check_chunk(task)),
            ("OpenSSL (cryptography)", with_openssl),
        ):
            began = time.perf_counter()
            assert run() == []
            times[name].append(time.perf_counter() - began)
    print(
        f"# {args.count} entry signatures, one process, {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}"
    )
    base = statistics.median(times["OpenSSL (cryptography)"])
    for name, runs in times.items():
        per = statistics.median(runs) / args.count * 1e6
        print(f"{name:<26} {per:7.1f} us per signature  ({base / statistics.median(runs):.2f}x OpenSSL)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="make and bulk-load a database; write its STATE.json")
    b.add_argument("--entries", type=int, default=1_000_000)
    b.add_argument("--items", type=int, default=1000, help="evidence items made through the services")
    b.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/", help="server (trust auth)")
    b.add_argument("--db-prefix", default="custody_verify", help="database name: PREFIX_<pid>")
    b.add_argument("--state", help="where to write STATE.json (default ./<database>.json)")
    m = sub.add_parser("measure", help="floor and verify_log on a built database")
    m.add_argument("state")
    m.add_argument("--baseline", help="another checkout whose verify_log runs on the same database")
    m.add_argument("--repeat", type=int, default=1, help="runs of each verify_log")
    d = sub.add_parser("drop", help="drop a built database and its data dir")
    d.add_argument("state")
    g = sub.add_parser("signatures", help="entry signature checks: libsodium against OpenSSL")
    g.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    return {"build": build, "measure": measure, "drop": drop, "signatures": signatures}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
