"""Test settings: the project's settings with a throwaway data dir and cheap key KDF.

The environment is set before importing custody.settings, and it is the
process environment, so gunicorn and Celery workers started by the tests
inherit the same data dir and settings.
"""

import os
import tempfile

os.environ.setdefault("CUSTODY_DATA_DIR", tempfile.mkdtemp(prefix="custody-test-"))
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("CUSTODY_KEY_PASSPHRASE", "test-passphrase")
# Key files made in tests use a cheap scrypt cost; the format records it.
os.environ.setdefault("CUSTODY_KEY_SCRYPT_N", str(2**10))
os.environ.setdefault("CUSTODY_AUTH_RATE", "1000/min")
os.environ.setdefault("CUSTODY_PUBLIC_RATE", "100000/min")
# A queue of this session's own, so a shared Redis never hands a test worker
# tasks left over from another run.
os.environ.setdefault("CUSTODY_CELERY_QUEUE", f"custody-test-{os.getpid()}")
os.environ.setdefault("CUSTODY_EXTRA_ANALYZERS", "tests.analyzers_for_tests")
# Short, so the crash test sees a killed worker's run re-queued quickly.
os.environ.setdefault("CUSTODY_ANALYSIS_STALE_SECONDS", "4")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

from custody.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; tests only

if os.environ.get("CUSTODY_USE_TEST_DB") == "1":
    # A server or worker started by the tests: use the database the test
    # session created, not the development one.
    _db = DATABASES["default"]  # noqa: F405
    _db["NAME"] = _db.get("TEST", {}).get("NAME") or "test_" + str(_db["NAME"])

# A second, empty database for the rebuild test: the custody tables are
# rebuilt there from the log of the default one (custody/rebuild.py).
_default = DATABASES["default"]  # noqa: F405
if _default["ENGINE"].endswith("sqlite3"):
    _rebuild_name, _rebuild_test = DATA_DIR / "rebuild.sqlite3", str(DATA_DIR / "test-rebuild.sqlite3")  # noqa: F405
else:
    _rebuild_name, _rebuild_test = f"{_default['NAME']}_rebuild", f"test_{_default['NAME']}_rebuild"
DATABASES["rebuild"] = {**_default, "NAME": _rebuild_name, "TEST": {"NAME": _rebuild_test}}  # noqa: F405
