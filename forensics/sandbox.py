"""Run one analyzer in a child process, with a wall-clock time limit and a memory limit.

Celery's time limits alone bound neither memory nor C code that never returns
to Python (a decoder looping on a hostile file). So the worker does not run
``analyze`` itself: it starts a fresh interpreter (``python -m
forensics.sandbox``: nothing inherited from the worker's threads, memory or
database connections), which

- limits its own address space with ``setrlimit(RLIMIT_AS)`` before it imports
  the analyzer, so the limit covers the interpreter, the libraries and the
  data (an allocation past it raises MemoryError, or kills the child);
- asks the kernel to kill it if the worker dies (``PR_SET_PDEATHSIG``), and
  caps its CPU time (``RLIMIT_CPU``) as a backstop, so an orphan cannot run on;
- sends back the output and the artifacts, or why it has none.

The worker waits at most the time limit, then kills the child (SIGKILL). It
survives all of this: an input can end its own analysis, never the worker.

Pure module: no Django, no database (the child imports only the analyzer).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .analyzers.base import AnalysisContext, AnalysisError

# Extra CPU seconds over the wall-clock limit before the kernel stops an
# orphaned child (the worker, when alive, kills it at the wall-clock limit).
_CPU_GRACE_S = 30
_PR_SET_PDEATHSIG = 1
_ROOT = Path(__file__).resolve().parent.parent  # so the child imports this same code


class ChildDied(AnalysisError):
    """The child process ended without an answer (a signal, or an exit in C code)."""


class LimitExceeded(AnalysisError):
    """The analysis went past its time or memory limit."""


def run(
    module_name: str,
    path: str,
    params: dict,
    ctx: AnalysisContext,
    *,
    time_limit: float,
    memory_limit: int | None,
    pass_fds: tuple[int, ...] = (),
) -> tuple[dict, AnalysisContext]:
    """``module.analyze(path, params, ctx)`` in a child; returns (output, ctx with its artifacts).

    Raises AnalysisError (the analyzer refused the input, or failed), its
    subclass LimitExceeded (time or memory) or ChildDied; each message is
    the plain reason to record. ``pass_fds``: descriptors the child inherits
    under the same numbers (the verified copies that ``path`` and ``params``
    name as /proc/self/fd/N).

    The request, the answer and the child's stderr go through files (no
    pipe to fill up and block on) that no path names, on ``ctx.workdir``'s
    filesystem, passed as descriptors: a named file there could be rewritten
    by anyone who can write in the data directory between one process
    writing it and the other reading it (another file to analyse, a forged
    answer for the worker to sign).
    """
    workdir = Path(ctx.workdir or tempfile.mkdtemp(prefix="analysis-"))
    job = {
        "sys_path": [p for p in sys.path if p],
        "module": module_name,
        "path": path,
        "params": params,
        "ctx": ctx,
        "memory_limit": memory_limit,
        "time_limit": time_limit,
        "parent": os.getpid(),
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]))
    with (
        tempfile.TemporaryFile(dir=workdir) as request,
        tempfile.TemporaryFile(dir=workdir) as answer,
        tempfile.TemporaryFile(dir=workdir) as errors,  # FFmpeg may say a lot about a bad file
    ):
        request.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        request.flush()
        request.seek(0)  # the child reads through the same open file, from here
        # Not multiprocessing: Celery's pool processes are daemonic, and those may
        # not start multiprocessing children. A plain interpreter, started fresh.
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", "forensics.sandbox", str(request.fileno()), str(answer.fileno())],
            env=env,
            cwd=str(workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            pass_fds=(request.fileno(), answer.fileno(), *pass_fds),
        )
        try:
            child.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise LimitExceeded(
                f"the analysis went past its time limit of {time_limit:g} s and was stopped"
            ) from None
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        answer.seek(0)
        data = answer.read()
        size = int.from_bytes(data[:8], "big")
        try:
            if len(data) != 8 + size:  # none, or only part of one: the child died while writing
                raise EOFError
            kind, payload = pickle.loads(data[8:])  # noqa: S301 - written by our own child
        except (EOFError, pickle.UnpicklingError):
            reason = _death_reason(child.returncode, memory_limit, _tail(errors))
            raise (LimitExceeded if "out of memory" in reason else ChildDied)(reason) from None
    if kind == "ok":
        return payload
    if kind == "memory":
        raise LimitExceeded(f"the analysis ran out of memory (its limit is {_mib(memory_limit)})")
    if kind == "refused":
        raise AnalysisError(payload)
    raise AnalysisError(f"analyzer error: {payload}")


def _mib(limit: int | None) -> str:
    return f"{limit / (1 << 20):g} MiB" if limit else "the machine's memory"


def _tail(f, size: int = 4096) -> bytes:
    try:
        f.seek(max(0, f.seek(0, os.SEEK_END) - size))
        return f.read()
    except OSError:
        return b""


def _death_reason(exitcode: int | None, memory_limit: int | None, stderr: bytes = b"") -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            return (
                f"the analysis process was killed ({name}), e.g. by the system's out-of-memory killer "
                f"(its own memory limit is {_mib(memory_limit)})"
            )
        return f"the analysis process crashed ({name})"
    last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if stderr else []
    if last and "MemoryError" in last[0]:
        return f"the analysis ran out of memory (its limit is {_mib(memory_limit)})"
    detail = f": {last[0][:300]}" if last else ""
    return f"the analysis process ended without a result (exit code {exitcode}){detail}"


def main(request_fd: int, answer_fd: int) -> None:
    """The child: read the request, limit ourselves, analyse, write the answer."""
    with os.fdopen(request_fd, "rb") as request:
        job = pickle.load(request)  # noqa: S301 - written by our parent
    _die_with(job["parent"])
    cpu = int(job["time_limit"]) + _CPU_GRACE_S
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if job["memory_limit"]:
        resource.setrlimit(resource.RLIMIT_AS, (job["memory_limit"], job["memory_limit"]))
    sys.path[:0] = [p for p in job["sys_path"] if p not in sys.path]
    ctx = job["ctx"]
    try:
        module = importlib.import_module(job["module"])
        output = module.analyze(job["path"], job["params"], ctx)
        message = ("ok", (output, ctx))
    except AnalysisError as exc:
        message = ("refused", str(exc) or exc.__class__.__name__)
    except MemoryError:
        message = ("memory", None)
    except Exception as exc:  # a bug or an input the analyzer did not foresee
        message = ("error", f"{exc.__class__.__name__}: {exc}")
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        data = pickle.dumps(("memory", None))
    except Exception as exc:  # e.g. output that cannot be pickled
        data = pickle.dumps(("error", f"the output cannot be passed back: {exc.__class__.__name__}: {exc}"))
    # Its length first: a child killed while writing leaves an answer too short, which counts as none.
    with os.fdopen(answer_fd, "wb") as answer:
        answer.write(len(data).to_bytes(8, "big"))
        answer.write(data)


def _die_with(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this process when the worker that started it dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
