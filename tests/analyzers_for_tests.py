"""An analyzer used by the pipeline tests (registered through CUSTODY_EXTRA_ANALYZERS).

It does real work (re-hashes the file and keeps the digest as an artifact)
and can be told to take its time, to refuse the input, to allocate memory or
to kill its own process, so the tests can kill a worker mid-run, see a
recorded failure and run into the time and memory limits.
"""

import hashlib
import os
import signal
import time

from forensics.analyzers.base import AnalysisError, finding

NAME = "test.digest"
VERSION = "1.1.0"  # 1.1.0: hog_mb and kill_self
TIME_LIMIT = 120
MEMORY_LIMIT = 1 << 30
ACCEPTS = ["*/*"]
DESCRIPTION = "SHA-256 of the file, slowly if asked (tests only)"
LIMITS = ["for tests of the pipeline; says nothing about the file's authenticity"]
PARAMETERS = {
    "delay": {"type": "float", "default": 0.0, "min": 0, "max": 60, "help": "seconds to wait first"},
    "fail": {"type": "bool", "default": False, "help": "refuse the input"},
    "hog_mb": {
        "type": "int",
        "default": 0,
        "min": 0,
        "max": 65536,
        "help": "MiB to allocate and touch first",
    },
    "kill_self": {"type": "bool", "default": False, "help": "end the analysing process with SIGKILL"},
}


def analyze(path, params, ctx):
    if params["fail"]:
        raise AnalysisError("the input was refused on purpose")
    if params["kill_self"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if params["hog_mb"]:
        hog = bytearray(params["hog_mb"] << 20)  # zero-filled: every page is touched
        del hog
    time.sleep(params["delay"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    ref = ctx.add_artifact("digest.txt", "text/plain", h.hexdigest().encode())
    return {
        "findings": [
            finding("sha256_recomputed", "fact", h.hexdigest(), note="SHA-256 of the analysed bytes"),
            finding("digest_file", "visual", artifact=ref, note="the digest as a text file"),
            finding("size", "measurement", ctx.size, unit="bytes", note="from the intake record"),
        ],
        "libraries": {"hashlib": "stdlib"},
    }
