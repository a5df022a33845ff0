"""Settings read from the environment: each case in a fresh process, as a server would start."""

import json
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from .conftest import ROOT


def run_python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    base = {
        "PATH": "/usr/bin:/bin",
        "CUSTODY_DATA_DIR": str(tmp_path / "data"),
        "DJANGO_SECRET_KEY": "test-only",
        "DJANGO_SETTINGS_MODULE": "custody.settings",
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=60
    )


def database_settings(tmp_path, **env) -> dict:
    code = "import json, custody.settings as s; print(json.dumps(s.DATABASES['default'], default=str))"
    done = run_python(code, tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sqlite_url_keeps_the_default_locking_and_durability_options(tmp_path):
    default = database_settings(tmp_path)
    from_url = database_settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/elsewhere.sqlite3")
    assert from_url["NAME"] == f"{tmp_path}/elsewhere.sqlite3"
    assert from_url["OPTIONS"] == default["OPTIONS"]
    assert default["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in default["OPTIONS"]["init_command"]
    # A file test database beside it, so servers and workers started by the tests share it.
    assert from_url["TEST"] == {"NAME": f"{tmp_path}/test-elsewhere.sqlite3"}


def test_sqlite_url_database_is_in_wal_mode_with_full_sync_after_connect(tmp_path):
    code = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    print(*[c.execute(f'PRAGMA {p}').fetchone()[0] for p in"
        " ('journal_mode', 'synchronous', 'busy_timeout')])\n"
    )
    done = run_python(code, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/url.sqlite3")
    assert done.returncode == 0, done.stderr
    # WAL, synchronous=FULL (2), and the 30 s timeout as SQLite's busy timeout.
    assert done.stdout.split() == ["wal", "2", "30000"]
    # WAL is recorded in the file itself: any later client finds it on.
    with closing(sqlite3.connect(tmp_path / "url.sqlite3")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_url_still_loads(tmp_path, url):
    assert database_settings(tmp_path, DATABASE_URL=url)["NAME"] == ":memory:"


APP = "postgres://custody_app@db.example:5432/custody"
OWNER = "postgres://custody_owner@db.example:5432/custody"


def test_servers_connect_as_the_app_role_and_only_the_release_step_as_the_owner(tmp_path):
    code = "import custody.settings as s; print(s.DATABASES['default']['USER'], s.CUSTODY_DB_APP_ROLE)"
    server = run_python(code, tmp_path, DATABASE_URL=APP, DATABASE_MIGRATE_URL=OWNER)
    release = run_python(code, tmp_path, DATABASE_URL=APP, DATABASE_MIGRATE_URL=OWNER, CUSTODY_DB_OWNER="1")
    assert server.stdout.split() == ["custody_app", "custody_app"], server.stderr
    assert release.stdout.split() == ["custody_owner", "custody_app"], release.stderr
    # One role: the release step runs as DATABASE_URL and there is nothing to grant.
    single = run_python(code, tmp_path, DATABASE_URL=APP, CUSTODY_DB_OWNER="1")
    assert single.stdout.split() == ["custody_app"], single.stderr
    # The app through a pooler on another port, migrations straight to the server.
    pooled = run_python(
        code, tmp_path, DATABASE_URL=APP.replace(":5432", ":6432"), DATABASE_MIGRATE_URL=OWNER
    )
    assert pooled.stdout.split() == ["custody_app", "custody_app"], pooled.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_MIGRATE_URL": OWNER}, "DATABASE_MIGRATE_URL needs DATABASE_URL"),
        (
            {"DATABASE_URL": APP, "DATABASE_MIGRATE_URL": OWNER.replace("/custody", "/other")},
            "must name the same database",
        ),
        (
            {"DATABASE_URL": "sqlite:///x.sqlite3", "DATABASE_MIGRATE_URL": "sqlite:///x.sqlite3"},
            "for PostgreSQL only",
        ),
        ({"DATABASE_URL": OWNER, "DATABASE_MIGRATE_URL": OWNER}, "must name the app's own role"),
        (
            {"DATABASE_URL": "postgres:///custody", "DATABASE_MIGRATE_URL": OWNER},
            "must name the app's own role",
        ),
    ],
)
def test_database_role_misconfigurations_fail_at_startup(tmp_path, env, message):
    done = run_python("import custody.settings", tmp_path, **env)
    assert done.returncode != 0 and message in done.stderr


def test_login_limits_come_from_the_environment(tmp_path):
    code = (
        "import json, custody.settings as s; print(json.dumps([s.AXES_FAILURE_LIMIT, "
        "s.AXES_COOLOFF_TIME.total_seconds(), sorted(s.CUSTODY_TRUSTED_PROXIES), s.AXES_HANDLER]))"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [10, 900.0, [], "axes.handlers.database.AxesDatabaseHandler"]
    done = run_python(
        code,
        tmp_path,
        CUSTODY_LOGIN_FAILURE_LIMIT="5",
        CUSTODY_LOGIN_COOLOFF_MINUTES="60",
        CUSTODY_TRUSTED_PROXIES="10.0.0.1, 10.0.0.2",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[:3] == [5, 3600.0, ["10.0.0.1", "10.0.0.2"]]


@pytest.mark.parametrize("name", ["CUSTODY_LOGIN_FAILURE_LIMIT", "CUSTODY_LOGIN_COOLOFF_MINUTES"])
def test_login_limits_refuse_zero(tmp_path, name):
    done = run_python("import custody.settings", tmp_path, **{name: "0"})
    assert done.returncode != 0
    assert name in done.stderr


def test_the_secret_key_file_is_looked_for_with_the_key_files_first(tmp_path):
    """scripts/serve writes it to the key directory; one an earlier version left in the data
    directory is still read when the key directory has none."""
    code = "import custody.settings as s; print(s.SECRET_KEY)"
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    (data / "secret_key").write_text("from-the-data-dir\n")
    assert run_python(code, tmp_path, DJANGO_SECRET_KEY="").stdout.strip() == "from-the-data-dir"
    (data / "keys" / "secret_key").write_text("from-the-key-dir\n")
    assert run_python(code, tmp_path, DJANGO_SECRET_KEY="").stdout.strip() == "from-the-key-dir"
    elsewhere = tmp_path / "keys-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret_key").write_text("from-CUSTODY_KEY_DIR\n")
    done = run_python(code, tmp_path, DJANGO_SECRET_KEY="", CUSTODY_KEY_DIR=str(elsewhere))
    assert done.stdout.strip() == "from-CUSTODY_KEY_DIR"
    assert run_python(code, tmp_path).stdout.strip() == "test-only"  # the environment wins
