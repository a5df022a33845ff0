"""The second-factor flag is a custody fact: projected from the log's enrolment and removal entries,
so ``rebuild_state`` restores it. The devices (TOTP key, recovery codes) are credentials, not in the
log: a rebuilt account that had enrolled keeps the requirement and is refused, whatever it types,
until an administrator resets its second factor. Never in on the password alone."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django_otp.oath import TOTP

from custody import audit, dbguard, projection, rebuild, second_factor
from custody.models import GRANTS_SEAL, LogEntry, User, fresh, open_totp_key
from custody.projection import TABLES

from .conftest import PASSWORD, enrol_second_factor, totp_code
from .test_tamper_attack import token_with_password

MISSING = "administrator must reset it"


def users(using: str) -> dict[str, tuple]:
    """The projected user rows of one database, in the log's terms, by username."""
    table = TABLES["user"]
    columns = [*table.key, *table.fields]
    rows = User.objects.using(using).values_list(*columns)
    return {
        row[columns.index("username")]: tuple(
            projection.normalize(table, c, v) for c, v in zip(columns, row, strict=True)
        )
        for row in rows
    }


def enrolled_and_removed(alice, bob):
    """Alice enrols; bob enrols and removes his second factor (with a code): two entries each way."""
    device, codes = enrol_second_factor(alice)
    bobs, _ = enrol_second_factor(bob)
    second_factor.remove(actor=bob, user=User.objects.get(pk=bob.pk), code=totp_code(bobs))
    return device, codes


@pytest.mark.django_db(databases=["default", "rebuild"])
def test_rebuild_restores_the_second_factor_flag(root, alice, bob):
    enrolled_and_removed(alice, bob)
    actions = list(LogEntry.objects.order_by("index").values_list("action", flat=True))
    assert actions.count("account.second_factor_enrolled") == 2
    assert actions.count("account.second_factor_removed") == 1
    rebuild.rebuild("default", "rebuild")
    rebuilt = {u.username: u for u in User.objects.using("rebuild").all()}
    assert rebuilt["alice"].second_factor is True
    assert rebuilt["bob"].second_factor is False  # enrolled, then removed
    assert rebuilt["root"].second_factor is False  # never enrolled
    # The rows are what the live ones are, flag included, and their seals hold and bind the newest
    # entry about each account (alice's enrolment, bob's removal): not an earlier state.
    assert users("rebuild") == users("default")
    for name, row in rebuilt.items():
        assert GRANTS_SEAL.intact(row), name
        assert fresh(GRANTS_SEAL.claim(row), using="rebuild"), name
    removal = LogEntry.objects.using("rebuild").get(action="account.second_factor_removed")
    assert rebuilt["bob"].grants_log_index == removal.index
    # No device came with them: the one account that is waiting for a reset is named.
    assert rebuild.second_factor_without_device("rebuild") == ["alice"]
    assert rebuild.second_factor_without_device("default") == []


@pytest.mark.django_db(databases=["default", "rebuild"])
def test_rebuilt_account_with_the_flag_is_refused_until_reset(root, alice, bob, monkeypatch):
    """The server rebuilt from its own log (rebuild_state into an empty database): alice's account
    says a second factor is in force and has no device. Her password (set again, as every account's
    must be after a rebuild) buys no token and no page; her old phone's code and her recovery codes
    are refused with the way out; the administrator's reset lets her in, and verify_log agrees with
    the tables throughout. Bob, who had removed his, needs no code."""
    device, codes = enrolled_and_removed(alice, bob)
    key, _ = open_totp_key(device)
    rebuild.rebuild("default", "rebuild")
    # What rebuild_state --source-url does on a new server: the default database emptied, then
    # rebuilt from the log of the other one (itself rebuilt from this one).
    dbguard.remove(connection)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # TRUNCATE refuses tables with deferred checks pending
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    try:
        call_command("flush", "--no-input", database="default", verbosity=0)
    finally:
        dbguard.install(connection)
    # The command opens the source by its URL; in a test its rows are visible only through the
    # test's own connection to it, so the source alias is redirected there.
    replay = rebuild.rebuild
    monkeypatch.setattr(rebuild, "rebuild", lambda source, target, **kw: replay("rebuild", target, **kw))
    out = io.StringIO()
    call_command("rebuild_state", "--source-url", "sqlite:///unused", stdout=out, stderr=io.StringIO())
    assert "1 account(s) have a second factor in force but no device here" in out.getvalue()
    assert out.getvalue().rstrip().endswith(": alice"), out.getvalue()
    for user in User.objects.all():
        user.set_password(PASSWORD)  # manage.py changepassword: passwords are not in the log
        user.save()
    assert User.objects.get(username="alice").second_factor is True
    report = audit.verify()
    assert report.ok, report.problems

    answer = token_with_password("alice")
    assert answer.status_code == 401 and "send its current code" in answer.json()["detail"]
    phone = TOTP(key, device.step, device.t0, device.digits)  # the device's row is gone, not her phone
    answer = token_with_password("alice", otp=f"{phone.token():0{device.digits}d}")
    assert answer.status_code == 401 and MISSING in answer.json()["detail"], answer.content
    answer = token_with_password("alice", otp=codes[0])
    assert answer.status_code == 401 and MISSING in answer.json()["detail"], answer.content
    web = Client()
    assert web.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    assert web.get("/")["Location"].startswith("/account/second-factor/?next=")
    refused = web.post("/account/second-factor/", {"code": codes[1]})
    assert refused.status_code == 409 and MISSING in refused.content.decode()
    assert web.get("/")["Location"].startswith("/account/second-factor/?next=")
    assert token_with_password("bob").status_code == 201

    out = io.StringIO()
    call_command("reset_second_factor", "alice", stdout=out)
    assert User.objects.get(username="alice").second_factor is False
    assert token_with_password("alice").status_code == 201
    assert rebuild.second_factor_without_device("default") == []
    report = audit.verify()
    assert report.ok, report.problems
