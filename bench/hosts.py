#!/usr/bin/env python
"""Scale-out benchmark: one host against two web hosts and a worker host; data dir against object store.

    python bench/hosts.py [--clients 8] [--seconds 20] [--size-kib 1024] [--analyses 40]

Starts a private PostgreSQL cluster and redis-server (as tests/test_faults.py
does) and SeaweedFS (tests/s3_fixtures.py), all on loopback, then for each
layout a fresh database, fresh data directories and processes started from
the deployment's Procfile lines (production settings, custody.settings):

- ``one host, data dir``: one web host (the Procfile's ``web`` line, 2
  gunicorn workers) and a worker (``worker``, concurrency 2) on one data
  directory, blobs in it. This is the baseline of the ratios.
- ``one host, object store``: the same, blobs in an Object Lock bucket.
- ``2 web + worker hosts, object store``: deploy/multihost's ``Procfile.web``
  twice and ``Procfile.worker`` once, each with its own data directory (the
  layout tests/test_multihost.py checks), clients spread over both web hosts.

Each layout is measured the same way: ``--clients`` threads upload fresh
random files of ``--size-kib`` for ``--seconds`` (multipart, each answer's
SHA-256 checked), then download them for ``--seconds`` (each checked), then
``--analyses`` ``file.entropy`` analyses are asked for at once and timed
until the last has succeeded. Printed: uploads/s, MB/s and p50/p99 latency,
downloads/s, analyses/min, and each as a ratio to the baseline layout run
in the same invocation.

All "hosts" share this machine's CPUs: on a 2-CPU machine the figures show
what the distribution costs (network hops to the store, staging, more
processes), not what more machines would add.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The private services and host processes are the tests' own (tests/test_faults.py,
# tests/test_multihost.py); importing them needs Django set up in this process,
# which itself touches no database.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
import django  # noqa: E402

django.setup()

import requests  # noqa: E402

from tests import s3_fixtures  # noqa: E402
from tests.test_faults import BOOTSTRAP, PASSWORD, Postgres, Redis, manage  # noqa: E402
from tests.test_multihost import Host  # noqa: E402

TIMEOUT = 60


class Layout:
    def __init__(self, name: str, web_hosts: int, separate: bool, store: bool):
        self.name, self.web_hosts, self.separate, self.store = name, web_hosts, separate, store


LAYOUTS = [
    Layout("one host, data dir", 1, separate=False, store=False),
    Layout("one host, object store", 1, separate=False, store=True),
    Layout("2 web + worker hosts, object store", 2, separate=True, store=True),
]


def deploy(layout: Layout, pg: Postgres, redis: Redis, seaweed, root: Path, number: int):
    """Database, data dirs and processes for one layout; returns (web hosts, all hosts, case id)."""
    database = f"custody_hosts_{number}"
    with pg.connect() as conn:
        conn.execute(f"CREATE DATABASE {database}")
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    shared = {
        "DJANGO_SETTINGS_MODULE": "custody.settings",
        "DATABASE_URL": pg.url(database),
        "DATABASE_MIGRATE_URL": "",
        "CELERY_BROKER_URL": redis.url,
        "CUSTODY_CELERY_QUEUE": f"bench-{number}-{os.getpid()}",
        "DJANGO_SECRET_KEY": "bench only",
        "CUSTODY_KEY_PASSPHRASE": "bench only",
        "CUSTODY_LOG_ORIGIN": "bench.hosts/log",
        "CUSTODY_BLOB_STORE": "",
        "CUSTODY_UPLOAD_STAGING": "",
    }
    if layout.store:
        shared.update(
            CUSTODY_BLOB_STORE=f"s3://{s3_fixtures.LOCKED}/{prefix}",
            CUSTODY_UPLOAD_STAGING=f"s3://{s3_fixtures.PLAIN}/{prefix}" if layout.separate else "",
            CUSTODY_S3_ENDPOINT_URL=seaweed.endpoint,
            AWS_ACCESS_KEY_ID=s3_fixtures.ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=s3_fixtures.SECRET_KEY,
            AWS_REGION=s3_fixtures.REGION,
        )
    place = root / f"layout-{number}"
    place.mkdir()
    first = Host("web-a", shared, place)
    first.env.update(WEB_CONCURRENCY="2", WORKER_CONCURRENCY="2")  # the Procfiles' defaults
    manage(first.env, "migrate")
    case = manage(first.env, "shell", "-c", BOOTSTRAP).stdout.strip().splitlines()[-1]
    if not layout.separate:
        first.serve()
        first.start("Procfile.worker", "worker")
        return [first], [first], case
    others = [Host("web-b", shared, place), Host("worker", shared, place)]
    for host in others:
        host.env.update(WEB_CONCURRENCY="2", WORKER_CONCURRENCY="2")
        shutil.copytree(first.data / "keys", host.data / "keys")
    webs, worker = [first, others[0]], others[1]
    for web in webs:
        web.serve()
    worker.start("Procfile.worker", "worker")
    return webs, [*webs, worker], case


def token_for(web: Host) -> str:
    answer = requests.post(
        web.url + "/api/v1/auth/token/", json={"username": "alice", "password": PASSWORD}, timeout=TIMEOUT
    )
    answer.raise_for_status()
    return answer.json()["token"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(webs: list[Host], case: str, args) -> dict:
    token = token_for(webs[0])
    size = args.size_kib * 1024
    uploaded: list[tuple[str, str]] = []
    upload_times: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def uploader(n: int) -> None:
        web = webs[n % len(webs)]
        http = requests.Session()
        http.headers["Authorization"] = f"Token {token}"
        while time.monotonic() < stop_at:
            data = os.urandom(size)
            began = time.perf_counter()
            answer = http.post(
                web.url + "/api/v1/evidence/",
                data={"case": case},
                files={"file": ("bench.bin", data)},
                timeout=TIMEOUT,
            )
            took = time.perf_counter() - began
            if answer.status_code != 201 or answer.json()["sha256"] != hashlib.sha256(data).hexdigest():
                raise RuntimeError(f"upload failed: {answer.status_code} {answer.text[:200]}")
            with lock:
                uploaded.append((answer.json()["id"], answer.json()["sha256"]))
                upload_times.append(took)

    began = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(uploader, range(args.clients)))
    upload_wall = time.perf_counter() - began

    download_times: list[float] = []
    stop_at = time.monotonic() + args.seconds

    def downloader(n: int) -> None:
        web = webs[(n + 1) % len(webs)]  # another host than the one that took most of them
        http = requests.Session()
        http.headers["Authorization"] = f"Token {token}"
        i = n
        while time.monotonic() < stop_at:
            item, sha256 = uploaded[i % len(uploaded)]
            i += args.clients
            began = time.perf_counter()
            answer = http.get(f"{web.url}/api/v1/evidence/{item}/content/", timeout=TIMEOUT)
            took = time.perf_counter() - began
            if answer.status_code != 200 or hashlib.sha256(answer.content).hexdigest() != sha256:
                raise RuntimeError(f"download failed: {answer.status_code}")
            with lock:
                download_times.append(took)

    began = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(downloader, range(args.clients)))
    download_wall = time.perf_counter() - began

    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    began = time.perf_counter()
    asked = []
    for n in range(args.analyses):
        item, _ = uploaded[n % len(uploaded)]
        web = webs[n % len(webs)]
        answer = http.post(
            f"{web.url}/api/v1/evidence/{item}/analyses/",
            json={"analyzer": "file.entropy", "parameters": {}},
            timeout=TIMEOUT,
        )
        if answer.status_code not in (201, 202):
            raise RuntimeError(f"analysis request failed: {answer.status_code} {answer.text[:200]}")
        asked.append(answer.json()["id"])
    pending = set(asked)
    deadline = time.monotonic() + 1800
    while pending and time.monotonic() < deadline:
        for analysis in list(pending):
            status = http.get(f"{webs[0].url}/api/v1/analyses/{analysis}/", timeout=TIMEOUT).json()["status"]
            if status == "failed":
                raise RuntimeError(f"analysis {analysis} failed")
            if status == "succeeded":
                pending.discard(analysis)
        time.sleep(0.5)
    if pending:
        raise RuntimeError(f"{len(pending)} analyses did not end")
    analyses_wall = time.perf_counter() - began

    return {
        "uploads/s": len(upload_times) / upload_wall,
        "upload MB/s": len(upload_times) * size / upload_wall / 1e6,
        "upload p50 ms": statistics.median(upload_times) * 1000,
        "upload p99 ms": percentile(upload_times, 0.99) * 1000,
        "downloads/s": len(download_times) / download_wall,
        "download p99 ms": percentile(download_times, 0.99) * 1000,
        "analyses/min": args.analyses / analyses_wall * 60,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--size-kib", type=int, default=1024)
    parser.add_argument("--analyses", type=int, default=40)
    args = parser.parse_args()

    print(
        f"# bench/hosts.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"# {args.clients} clients, {args.seconds} s per phase, {args.size_kib} KiB files, {args.analyses} analyses"
    )
    root = Path(tempfile.mkdtemp(prefix="custody-bench-hosts-"))
    pg, redis = Postgres(), Redis()
    results: list[tuple[str, dict, tuple[float, float]]] = []
    try:
        with s3_fixtures.running_seaweed(root / "seaweed") as seaweed:
            for number, layout in enumerate(LAYOUTS):
                webs, hosts, case = deploy(layout, pg, redis, seaweed, root, number)
                try:
                    load_before = os.getloadavg()[0]
                    figures = measure(webs, case, args)
                    results.append((layout.name, figures, (load_before, os.getloadavg()[0])))
                finally:
                    for host in hosts:
                        host.stop()
                print(f"{layout.name}: done", file=sys.stderr)
    finally:
        redis.destroy()
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)

    base = results[0][1]
    keys = list(base)
    print(f"{'layout':<38}" + "".join(f"{k:>16}" for k in keys) + f"{'load':>12}")
    for name, figures, load in results:
        cells = "".join(f"{figures[k]:>16.1f}" for k in keys)
        print(f"{name:<38}{cells}{f'{load[0]:.1f}-{load[1]:.1f}':>12}")
    print("ratios to the first layout (same run):")
    for name, figures, _ in results[1:]:
        cells = "".join(f"{figures[k] / base[k]:>16.2f}" for k in keys)
        print(f"{name:<38}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
