"""Accounts, roles, the create_user command, and hashed, revocable tokens."""

import io
import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from custody import services
from custody.models import ApiToken, LogEntry, LogHead, Role, User
from custody.services import token_digest

from .conftest import PASSWORD, ROOT, subprocess_env


def test_create_user_reads_password_from_environment(case_a, monkeypatch):
    monkeypatch.setenv("CUSTODY_PASSWORD", "a long password 1")
    call_command("create_user", "erin", "--role", "auditor", "--case", "A-1", stdout=io.StringIO())
    erin = User.objects.get(username="erin")
    assert erin.role == Role.AUDITOR and erin.check_password("a long password 1")
    assert list(erin.cases.values_list("reference", flat=True)) == ["A-1"]
    actions = list(LogEntry.objects.order_by("-index").values_list("action", flat=True)[:2])
    assert actions == ["case.member_added", "user.created"]


def test_create_user_reads_password_from_stdin(custody_db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin pw\n"))
    call_command("create_user", "frank", "--role", "admin", "--password-stdin", stdout=io.StringIO())
    frank = User.objects.get(username="frank")
    assert frank.check_password("from stdin pw") and frank.is_custody_admin and frank.is_staff


def test_create_user_without_password_fails_clearly(custody_db, monkeypatch):
    monkeypatch.delenv("CUSTODY_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="no password"):
        call_command("create_user", "gina", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no case"):
        call_command("create_user", "gina", "--case", "nope", stdout=io.StringIO())


def test_create_user_as_a_real_command_line(transactional_db):
    from custody.models import LogHead

    LogHead.objects.get_or_create(pk=1)
    result = subprocess.run(
        [sys.executable, "manage.py", "create_user", "hank", "--role", "investigator", "--password-stdin"],
        input="stdin password 9\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert User.objects.get(username="hank").check_password("stdin password 9")


def test_token_is_stored_hashed_and_works(alice):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 201
    token = response.json()["token"]
    row = ApiToken.objects.get(user=alice)
    assert row.digest == token_digest(token) and token not in json.dumps(
        list(ApiToken.objects.values()), default=str
    )
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/cases/").status_code == 200
    assert LogEntry.objects.filter(action="token.issued", actor=alice).exists()


def test_wrong_password_is_401(alice):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "wrong username or password"}


def test_malformed_token_request_is_400_json(custody_db):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    response = client.post("/api/v1/auth/token/", {"username": "x"}, format="json")
    assert response.status_code == 400 and response.json()["detail"].startswith("password:")


def test_revoked_token_stops_working(as_alice, alice):
    assert as_alice.delete("/api/v1/auth/token/").status_code == 204
    response = as_alice.get("/api/v1/cases/")
    assert response.status_code == 401 and response.json()["detail"] == "token revoked"
    assert LogEntry.objects.filter(action="token.revoked").count() == 1


def test_revoke_tokens_command(as_alice, alice):
    call_command("revoke_tokens", "--user", "alice", stdout=io.StringIO())
    assert as_alice.get("/api/v1/cases/").status_code == 401


def test_admin_sees_all_cases(as_root, case_a, case_b):
    refs = [c["reference"] for c in as_root.get("/api/v1/cases/").json()]
    assert refs == ["A-1", "B-1"]


def test_investigator_creates_case_and_becomes_member(as_alice):
    response = as_alice.post("/api/v1/cases/", {"reference": "C-9", "title": "New"}, format="json")
    assert response.status_code == 201
    assert response.json()["members"] == ["alice"]
    duplicate = as_alice.post("/api/v1/cases/", {"reference": "C-9", "title": "Again"}, format="json")
    assert duplicate.status_code == 409


def test_createsuperuser_refuses_and_creates_nothing(custody_db, monkeypatch):
    """Django's createsuperuser would make an administrator without a log entry."""
    from custody.management.commands.createsuperuser import Command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long password 2")
    before = LogEntry.objects.count()
    with pytest.raises(CommandError, match=r"create_user NAME --role admin"):
        call_command(Command(), "--noinput", "--username", "mallory", "--email", "m@example.org")
    with pytest.raises(CommandError, match=r"create_user NAME --role admin"):
        call_command(Command())  # interactive: refused before any prompt
    assert not User.objects.exists()
    assert LogEntry.objects.count() == before


def test_manage_py_createsuperuser_is_the_refusing_one(custody_db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long password 2")
    with pytest.raises(CommandError, match=r"create_user NAME --role admin"):
        call_command("createsuperuser", "--noinput", "--username", "mallory", "--email", "m@example.org")
    assert not User.objects.exists()


def test_deactivated_account_cannot_sign_in_and_the_change_is_logged(alice, case_a):
    client = APIClient()
    call_command("create_user", "alice", "--update", "--deactivate", stdout=io.StringIO())
    alice.refresh_from_db()
    assert not alice.is_active
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code in (400, 401)
    entry = LogEntry.objects.order_by("-index").first()
    assert entry.action == "user.deactivated" and entry.decoded["details"]["user"]["username"] == "alice"
    call_command("create_user", "alice", "--update", "--activate", stdout=io.StringIO())
    assert LogEntry.objects.order_by("-index").first().action == "user.activated"
    assert (
        client.post(
            "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
        ).status_code
        == 201
    )
    with pytest.raises(CommandError, match="add --update"):
        call_command("create_user", "zed", "--deactivate", stdout=io.StringIO())


# --- the credential seal: a password hash the server did not set lets nobody in -----------------


def token_for(username: str, password: str):
    return APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )


def test_password_set_by_the_server_is_sealed_and_a_change_renews_the_seal(alice):
    alice.refresh_from_db()
    assert alice.credential_mac and alice.credential_intact()
    assert token_for("alice", PASSWORD).status_code == 201
    user = User.objects.get(pk=alice.pk)
    user.set_password("a new passphrase for alice")
    user.save(update_fields=["password"])  # as Django's own password forms and commands do
    assert User.objects.get(pk=alice.pk).credential_intact()
    assert token_for("alice", "a new passphrase for alice").status_code == 201
    # Another save of the account (its role, its e-mail) neither needs nor renews the seal.
    user = User.objects.get(pk=alice.pk)
    user.email = "alice@example.org"
    user.save()
    assert token_for("alice", "a new passphrase for alice").status_code == 201


def test_an_outdated_hash_the_server_set_is_rehashed_on_login_and_stays_sealed(alice, settings):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    class Outdated(PBKDF2PasswordHasher):
        iterations = 1000

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # as in production
    user = User.objects.get(pk=alice.pk)
    user.set_password(PASSWORD)
    user.password = Outdated().encode(PASSWORD, Outdated().salt())  # set here, as an older release did
    user.save()
    assert User.objects.get(pk=alice.pk).credential_intact()
    assert token_for("alice", PASSWORD).status_code == 201
    renewed = User.objects.get(pk=alice.pk)
    assert "$1000$" not in renewed.password and renewed.credential_intact()  # re-hashed, and sealed
    assert token_for("alice", PASSWORD).status_code == 201


def test_a_hash_moved_from_another_account_or_cleared_seal_lets_nobody_in(alice, bob):
    bob_row = User.objects.get(pk=bob.pk)
    # Bob's hash and seal copied onto alice's row: bob's password must not open alice's account.
    User.objects.filter(pk=alice.pk).update(password=bob_row.password, credential_mac=bob_row.credential_mac)
    assert token_for("alice", PASSWORD).status_code == 401
    User.objects.filter(pk=alice.pk).update(credential_mac=None)
    assert token_for("alice", PASSWORD).status_code == 401
    assert token_for("bob", PASSWORD).status_code == 201  # bob's own account is untouched


def test_accounts_made_before_the_seal_are_sealed_by_the_migration(transactional_db):
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0014_resumable_mac")])
    try:
        Old = executor.loader.project_state([("custody", "0014_resumable_mac")]).apps.get_model(
            "custody", "User"
        )
        old = Old.objects.create(username="erin", password=make_password(PASSWORD), is_active=True)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert User.objects.get(pk=old.pk).credential_intact()
    LogHead.objects.get_or_create(pk=1)  # as the release step leaves the database (a token is logged)
    services.ensure_signing_keys()
    assert token_for("erin", PASSWORD).status_code == 201


def test_after_a_secret_key_rotation_seals_check_under_the_old_key_and_move_to_the_new(
    alice, bob, settings, capsys
):
    from django.contrib.auth.hashers import make_password

    old = settings.SECRET_KEY
    User.objects.filter(pk=bob.pk).update(password=make_password("planted"))  # not the server's
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the new secret key", [old]
    assert token_for("alice", PASSWORD).status_code == 201  # sealed under the old key: still good
    with pytest.raises(SystemExit) as exit_code:
        call_command("reseal_credentials")
    assert exit_code.value.code == 1
    out = capsys.readouterr()
    assert "resealed 1 account(s)" in out.out and f"user {bob.pk} (bob)" in out.err
    settings.SECRET_KEY_FALLBACKS = []  # the old key can go now
    assert token_for("alice", PASSWORD).status_code == 201
    assert not User.objects.get(pk=bob.pk).credential_intact()  # the planted hash was not blessed
    # An administrator gives bob a new password: the server sets it, so it is sealed.
    user = User.objects.get(pk=bob.pk)
    user.set_password("bob's new passphrase")
    user.save()
    assert token_for("bob", "bob's new passphrase").status_code == 201


def test_token_seals_check_under_the_old_secret_key_and_move_to_the_new(alice, settings, capsys):
    issued = token_for("alice", PASSWORD).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued}")
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the new secret key", [old]
    assert client.get("/api/v1/cases/").status_code == 200  # sealed under the old key: still good
    call_command("reseal_credentials")
    out = capsys.readouterr().out
    assert "resealed 1 API token(s)" in out and "resealed 1 account grant(s)" in out
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get("/api/v1/cases/").status_code == 200
    assert ApiToken.objects.get(digest=token_digest(issued)).seal_intact()


def test_tokens_and_accounts_made_before_their_seals_are_sealed_by_the_migrations(transactional_db, alice):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    issued = token_for("alice", PASSWORD).json()["token"]
    ApiToken.objects.update(mac=None)
    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0015_user_credential_mac")])  # before the token and grant seals
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued}")
    assert client.get("/api/v1/cases/").status_code == 200


def test_token_seals_of_before_0021_move_to_the_seal_that_covers_revocation(transactional_db, alice):
    """Rows sealed the old way (digest and account) are sealed again with their revocation time;
    a row whose old seal did not hold stays refused."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from custody.models import seal

    live, revoked, planted = (token_for("alice", PASSWORD).json()["token"] for _ in range(3))
    services.revoke_token(actor=alice, token=ApiToken.objects.get(digest=token_digest(revoked)))
    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0020_resumableupload_progress_seal")])
    # The model as it was then (later migrations add columns the current model reads).
    Old = executor.loader.project_state([("custody", "0020_resumableupload_progress_seal")]).apps.get_model(
        "custody", "ApiToken"
    )
    for row in Old.objects.all():
        old = seal("custody.api.token", [row.digest, str(row.user_id)], settings.SECRET_KEY)
        Old.objects.filter(pk=row.pk).update(mac=b"planted" if row.digest == token_digest(planted) else old)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    answers = {}
    for name, token in (("live", live), ("revoked", revoked), ("planted", planted)):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        answer = client.get("/api/v1/cases/")
        answers[name] = (
            answer.status_code,
            answer.json().get("detail") if answer.status_code != 200 else None,
        )
    assert answers == {
        "live": (200, None),
        "revoked": (401, "token revoked"),
        "planted": (401, "invalid token"),
    }


def test_seals_of_before_0023_are_bound_to_the_newest_entry_about_their_row(transactional_db, alice):
    """Migration 0023 gives existing entries their subject and binds each row still sealed the old way
    to the newest entry about it: a live token, the account, its grants still work; a row's seal of
    before the migration (bound to no entry), written back after a later change, is refused."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    live = token_for("alice", PASSWORD).json()["token"]
    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0022_totp_key_encrypted")])
    with connection.cursor() as cursor:  # the rows as a backup of before 0023 holds them
        cursor.execute("SELECT mac FROM custody_apitoken")
        (old_mac,) = cursor.fetchone()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    row = ApiToken.objects.get(digest=token_digest(live))
    issued = LogEntry.objects.get(action="token.issued", subject=f"token:{row.digest}")
    assert row.log_index == issued.index and row.seal_intact()
    assert User.objects.get(pk=alice.pk).grants_log_index is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {live}")
    assert client.get("/api/v1/cases/").status_code == 200
    assert token_for("alice", PASSWORD).status_code == 201
    services.revoke_token(actor=alice, token=row)
    ApiToken.objects.filter(pk=row.pk).update(revoked_at=None, mac=bytes(old_mac), log_index=None)
    assert ApiToken.objects.get(pk=row.pk).seal_intact()  # the seal of before 0023 holds...
    assert client.get("/api/v1/cases/").status_code == 401  # ...but a later entry is in the log


def test_secret_key_fallbacks_come_from_the_environment(tmp_path):
    from .test_settings import run_python

    code = "import custody.settings as s; print(s.SECRET_KEY_FALLBACKS)"
    done = run_python(code, tmp_path, DJANGO_SECRET_KEY_FALLBACKS="older\n\n oldest \n")
    assert done.stdout.strip() == "['older', 'oldest']", done.stderr
