"""Second factor for web logins (custody/second_factor.py): TOTP and recovery codes.

The codes are computed here from the device's key (RFC 6238, django_otp.oath),
as an authenticator app computes them, never asked of the server.
"""

from __future__ import annotations

import re
import time
from base64 import b32decode

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from rest_framework.test import APIClient

from custody import second_factor
from custody.models import LogEntry
from custody.models import SealedTOTPDevice as TOTPDevice
from custody.permissions import Forbidden

from .conftest import PASSWORD, api_client_for, enrol_second_factor, run_verify_log, totp_code
from .test_browser import browser, new_page  # noqa: F401 - fixtures

ENROL, VERIFY = "/account/second-factor/enrol/", "/account/second-factor/"
CODES_RE = re.compile(r"<li><code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code></li>")


def password_login(client: Client, username: str):
    return client.post("/login/", {"username": username, "password": PASSWORD})


def entries(action: str, user) -> list[dict]:
    rows = LogEntry.objects.filter(action=action).order_by("index")
    return [r.decoded for r in rows if r.decoded["details"].get("user", {}).get("id") == user.pk]


def wait_out_throttle(device) -> None:
    """Sleep until django-otp's throttle lets the device be tried again."""
    device.refresh_from_db()
    allowed, info = device.verify_is_allowed()
    if not allowed:
        from django.utils import timezone

        time.sleep(max(0.0, (info["locked_until"] - timezone.now()).total_seconds()) + 0.05)


def enrol_on_the_web(client: Client, user) -> list[str]:
    """Open the enrolment page, confirm with a code from its key; returns the recovery codes shown."""
    page = client.get(ENROL)
    assert page.status_code == 200
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.content.decode()).group(1)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert b32decode(secret.replace(" ", "")) == device.bin_key  # the page shows the device's own key
    shown = client.post(ENROL, {"code": totp_code(device)})
    assert shown.status_code == 200, shown.content
    codes = CODES_RE.findall(shown.content.decode())
    assert len(codes) == second_factor.RECOVERY_CODE_COUNT == 10
    return codes


# --- administrators must enrol ------------------------------------------------


def test_administrator_is_sent_to_enrolment_and_nowhere_else(root):
    client = Client()
    response = password_login(client, "root")
    assert response.status_code == 302
    for path in ["/", "/admin/", "/admin/custody/logentry/", "/cases/new/", "/account/", VERIFY]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(ENROL), (path, response["Location"])
    # A POST elsewhere is refused the same way, and does nothing.
    assert client.post("/cases/new/", {"reference": "X-1", "title": "t"})["Location"].startswith(ENROL)
    # The session counts for nothing on the API until the code is given.
    assert client.get("/api/v1/cases/").status_code in (401, 403)
    page = client.get(ENROL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Administrators must use a second factor" in html
    # The QR code is inline SVG paths: nothing the Content-Security-Policy would block.
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "<path" in svg and "style" not in svg and "<script" not in svg
    device = TOTPDevice.objects.get(user=root, confirmed=False)
    assert f"secret={device.config_url.split('secret=')[1].split('&')[0]}" in html


def test_enrolment_needs_a_right_code_and_wrong_codes_are_throttled(root):
    client = Client()
    password_login(client, "root")
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=root, confirmed=False)
    right = totp_code(device)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    refused = client.post(ENROL, {"code": wrong})
    assert refused.status_code == 400 and b"wrong code" in refused.content
    # Right after a wrong code even the right one waits (1 s after one failure).
    throttled = client.post(ENROL, {"code": right})
    assert throttled.status_code == 429 and b"too many wrong codes" in throttled.content
    assert not second_factor.is_enrolled(root)
    assert client.get("/")["Location"].startswith(ENROL)
    wait_out_throttle(device)
    shown = client.post(ENROL, {"code": right})
    assert shown.status_code == 200
    # Shown once: not kept by the browser or a cache, and under the CSP like every page.
    assert shown["Cache-Control"] == "no-store"
    assert "script-src 'self'" in shown["Content-Security-Policy"]
    codes = CODES_RE.findall(shown.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    # Now enrolled and verified in this session: everything opens.
    assert client.get("/").status_code == 200
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/cases/").status_code == 200
    # django-otp's admin pages (which would change devices unlogged, and show keys) are not there.
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert client.get("/admin/otp_static/staticdevice/").status_code == 404
    assert [e["details"]["method"] for e in entries("account.second_factor_enrolled", root)] == ["totp"]
    generated = entries("account.recovery_codes_generated", root)
    assert [(e["details"]["count"], e["details"]["reason"]) for e in generated] == [(10, "enrolment")]
    # Enrolling again is refused: the page sends an enrolled user to the account page.
    assert client.get(ENROL)["Location"] == "/account/"


def test_throttle_doubles_after_each_wrong_code(alice):
    device, _ = enrol_second_factor(alice)
    delays = []
    for n in range(1, 4):
        wait_out_throttle(device)
        with pytest.raises(second_factor.SecondFactorError):
            second_factor.verify(user=alice, code="000000" if totp_code(device) != "000000" else "111111")
        device.refresh_from_db()
        _, info = device.verify_is_allowed()
        delays.append(round((info["locked_until"] - device.throttling_failure_timestamp).total_seconds()))
        assert device.throttling_failure_count == n
    assert delays == [1, 2, 4]


# --- logging in with a second factor ------------------------------------------


def test_login_requires_a_code_once_enrolled_and_refuses_a_wrong_one(root):
    client = Client()
    password_login(client, "root")
    enrol_on_the_web(client, root)
    client.post("/logout/")
    device = TOTPDevice.objects.get(user=root, confirmed=True)

    assert password_login(client, "root").status_code == 302
    response = client.get("/cases/new/")
    assert response["Location"] == f"{VERIFY}?next=/cases/new/"
    assert client.get(ENROL)["Location"].startswith(VERIFY)  # no second device over the first
    assert client.get("/api/v1/cases/").status_code in (401, 403)
    right = totp_code(device)
    wrong = f"{(int(right) + 500_000) % 10**6:06d}"
    refused = client.post(VERIFY, {"code": wrong, "next": "/cases/new/"})
    assert refused.status_code == 400 and b"wrong" in refused.content
    assert client.get("/")["Location"].startswith(VERIFY)
    wait_out_throttle(device)
    accepted = client.post(VERIFY, {"code": right, "next": "/cases/new/"})
    assert accepted.status_code == 302 and accepted["Location"] == "/cases/new/"
    assert client.get("/cases/new/").status_code == 200
    assert client.get("/admin/").status_code == 200
    # The same code cannot be used twice (a replayed code is refused).
    other = Client()
    password_login(other, "root")
    wait_out_throttle(device)
    assert other.post(VERIFY, {"code": right}).status_code == 400

    failed = entries("account.second_factor_failed", root)
    assert [(e["details"]["method"], e["details"]["purpose"]) for e in failed] == [("totp", "login")] * 2
    used = entries("account.second_factor_used", root)
    assert [(e["details"]["method"], e["details"]["purpose"]) for e in used] == [("totp", "login")]
    assert all(e["actor"]["username"] == "root" and e["client"] == "127.0.0.1" for e in failed + used)


def test_an_unsafe_next_is_not_followed(alice):
    device, _ = enrol_second_factor(alice)
    client = Client()
    password_login(client, "alice")
    response = client.post(VERIFY, {"code": totp_code(device), "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_recovery_code_works_once(root):
    client = Client()
    password_login(client, "root")
    codes = enrol_on_the_web(client, root)
    client.post("/logout/")

    password_login(client, "root")
    # Typed as shown (with dashes) or in capitals: both are the code.
    response = client.post(VERIFY, {"code": codes[3].upper()})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert second_factor.recovery_codes_left(root) == 9
    client.post("/logout/")

    password_login(client, "root")
    again = client.post(VERIFY, {"code": codes[3]})
    assert again.status_code == 400 and b"already used recovery code" in again.content
    assert client.get("/")["Location"].startswith(VERIFY)
    used = entries("account.second_factor_used", root)
    assert [(e["details"]["method"], e["details"]["recovery_codes_left"]) for e in used] == [("recovery", 9)]
    assert [e["details"]["method"] for e in entries("account.second_factor_failed", root)] == ["recovery"]


def test_new_recovery_codes_need_an_app_code_and_cancel_the_old_ones(alice):
    client = Client()
    password_login(client, "alice")
    assert client.get("/").status_code == 200  # optional for investigators
    assert b'id="enrol-link"' in client.get("/account/").content
    old = enrol_on_the_web(client, alice)
    device = TOTPDevice.objects.get(user=alice, confirmed=True)
    # A recovery code does not make new recovery codes.
    refused = client.post("/account/second-factor/recovery-codes/", {"code": old[0]}, follow=True)
    assert b"authenticator app (six digits)" in refused.content
    shown = client.post("/account/second-factor/recovery-codes/", {"code": totp_code(device)})
    assert shown.status_code == 200
    new = CODES_RE.findall(shown.content.decode())
    assert len(new) == 10 and not set(new) & set(old)
    stored = set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True))
    # Stored as their HMAC, never as a code anyone could type.
    # ...of the account, the sheet's generation (its entry's log index) and the code.
    generation = second_factor.recovery_generation(alice)
    assert generation is not None
    assert stored == {
        second_factor.recovery_token(alice, c, generation=generation) for c in new
    } and not stored & {c.replace("-", "") for c in new}
    with pytest.raises(second_factor.SecondFactorError):
        second_factor.verify(user=alice, code=old[1])
    reasons = [e["details"]["reason"] for e in entries("account.recovery_codes_generated", alice)]
    assert reasons == ["enrolment", "regenerated"]


# --- optional for others, removal ----------------------------------------------


def test_investigator_may_enrol_and_remove_with_a_code(alice):
    client = Client()
    password_login(client, "alice")
    enrol_on_the_web(client, alice)
    client.post("/logout/")
    password_login(client, "alice")
    assert client.get("/")["Location"].startswith(VERIFY)
    device = TOTPDevice.objects.get(user=alice)
    assert client.post(VERIFY, {"code": totp_code(device)}).status_code == 302
    # Removal needs a code too.
    client.post("/account/second-factor/remove/", {"code": "12345678"})
    assert second_factor.is_enrolled(alice)
    wait_out_throttle(device)
    client.post("/account/second-factor/remove/", {"code": totp_code(device)})
    assert not second_factor.is_enrolled(alice)
    assert not StaticToken.objects.filter(device__user=alice).exists()
    client.post("/logout/")
    password_login(client, "alice")
    assert client.get("/").status_code == 200  # no code asked any more
    removed = entries("account.second_factor_removed", alice)
    assert [e["actor"]["username"] for e in removed] == ["alice"]


def test_administrator_removing_their_own_must_enrol_again(root):
    client = Client()
    password_login(client, "root")
    enrol_on_the_web(client, root)
    device = TOTPDevice.objects.get(user=root)
    client.post("/account/second-factor/remove/", {"code": totp_code(device)})
    assert client.get("/admin/")["Location"].startswith(ENROL)


def test_only_administrators_reset_another_users_second_factor(root, alice, bob):
    enrol_second_factor(alice)
    with pytest.raises(Forbidden):
        second_factor.remove(actor=bob, user=alice)
    assert second_factor.is_enrolled(alice)
    second_factor.remove(actor=root, user=alice)
    assert not second_factor.is_enrolled(alice)
    (entry,) = entries("account.second_factor_removed", alice)
    assert entry["actor"]["username"] == "root"


# --- API tokens -------------------------------------------------------------------


def test_api_tokens_work_without_a_code(root):
    api = api_client_for(root)  # a token issued before enrolment
    device, _ = enrol_second_factor(root)
    assert api.get("/api/v1/cases/").status_code == 200
    assert api.get("/api/v1/log/entries/").status_code == 200
    # A new token needs the code as well as the password once a second factor exists.
    fresh = APIClient()
    no_code = fresh.post("/api/v1/auth/token/", {"username": "root", "password": PASSWORD}, format="json")
    assert no_code.status_code == 401 and "second factor" in no_code.json()["detail"]
    with_code = fresh.post(
        "/api/v1/auth/token/",
        {"username": "root", "password": PASSWORD, "otp": totp_code(device)},
        format="json",
    )
    assert with_code.status_code == 201
    fresh.credentials(HTTP_AUTHORIZATION=f"Token {with_code.json()['token']}")
    assert fresh.get("/api/v1/cases/").status_code == 200
    used = entries("account.second_factor_used", root)
    assert [e["details"]["purpose"] for e in used] == ["api_token"]


def test_wrong_passwords_are_still_counted_by_axes(root, settings):
    enrol_second_factor(root)
    client = Client()
    for _ in range(settings.CUSTODY_LOGIN_FAILURE_LIMIT):
        client.post("/login/", {"username": "root", "password": "wrong password"})
    assert password_login(client, "root").status_code == 429
    assert "_auth_user_id" not in client.session


# --- the log ----------------------------------------------------------------------


def test_entries_hold_no_secret_and_verify_log_passes(root, alice):
    client = Client()
    password_login(client, "root")
    codes = enrol_on_the_web(client, root)
    device = TOTPDevice.objects.get(user=root)
    client.post("/logout/")
    password_login(client, "root")
    client.post(VERIFY, {"code": codes[0]})
    alice_device, alice_codes = enrol_second_factor(alice)
    second_factor.remove(actor=root, user=alice)

    actions = set(LogEntry.objects.filter(action__startswith="account.").values_list("action", flat=True))
    assert actions == {
        "account.second_factor_enrolled",
        "account.recovery_codes_generated",
        "account.second_factor_used",
        "account.second_factor_removed",
    }
    secrets_ = [device.key, device.key.upper(), *(c.replace("-", "") for c in codes), alice_device.key]
    secrets_ += [second_factor.base32_secret(device).replace(" ", "")] + alice_codes
    for row in LogEntry.objects.all():
        leaf = bytes(row.leaf).decode()
        assert not any(s in leaf or s.lower() in leaf.lower() for s in secrets_), row.action
    assert run_verify_log()[0] == 0


def test_verify_log_does_not_compare_device_rows(root):
    """Devices are credentials outside the projection: changing one is no custody fact."""
    device, _ = enrol_second_factor(root)
    TOTPDevice.objects.filter(pk=device.pk).update(name="renamed")
    assert run_verify_log()[0] == 0
    assert "totp" not in " ".join(second_factor_tables())


def second_factor_tables() -> list[str]:
    from custody import projection

    return [t.model.lower() for t in projection.TABLES.values()]


def test_totp_helper_matches_rfc_6238_vector():
    """The test's code generator is RFC 6238's (appendix B, SHA-1, T = 59 s: 94287082)."""
    totp = TOTP(b"12345678901234567890", step=30, t0=0, digits=8)
    totp.time = 59
    assert totp.token() == 94287082


# --- in a real browser --------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_enrolment_and_login_in_chromium(gunicorn_server, new_page):  # noqa: F811 - the fixture
    """Debian's Chromium against gunicorn: forced enrolment, the QR page under the CSP, codes at login."""
    from custody import services
    from custody.models import Role

    root = services.create_user(actor=None, username="root", password=PASSWORD, role=Role.ADMIN)
    page = new_page(gunicorn_server.url)

    def sign_in():
        page.goto("/login/")
        page.fill("input[name=username]", "root")
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("main form button[type=submit]")

    sign_in()
    assert page.url.startswith(f"{gunicorn_server.url}{ENROL}"), page.url
    assert page.locator("#enrol-required").is_visible()
    box = page.locator("#totp-qr svg").bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100  # drawn, not blocked
    page.goto("/admin/")
    assert page.url.startswith(f"{gunicorn_server.url}{ENROL}")

    # The code an app would show, from the key as the page shows it.
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    app = TOTP(b32decode(secret))
    page.fill("#id_code", f"{app.token():06d}")
    with page.expect_navigation():
        page.click("#enrol-form button[type=submit]")
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", c) for c in codes)
    with page.expect_navigation():
        page.click("#continue")
    page.goto("/admin/")
    assert page.url == f"{gunicorn_server.url}/admin/" and "Site administration" in page.content()

    with page.expect_navigation():
        page.click("header form button[type=submit]")  # log out
    sign_in()
    assert page.url.startswith(f"{gunicorn_server.url}{VERIFY}"), page.url
    page.fill("#id_code", "000000" if app.token() != 0 else "111111")
    with page.expect_navigation():
        page.click("#verify-form button[type=submit]")
    assert "wrong" in page.locator(".errorlist").inner_text()
    time.sleep(1.1)  # one wrong code: the next try waits a second
    page.fill("#id_code", codes[0])
    with page.expect_navigation():
        page.click("#verify-form button[type=submit]")
    assert page.url == f"{gunicorn_server.url}/"
    assert "recovery code; 9 left" in page.locator(".messages").inner_text()

    with page.expect_navigation():
        page.click("header form button[type=submit]")
    page.goto("/admin/")  # -> the admin's login -> the code -> back to the admin
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert page.url.startswith(f"{gunicorn_server.url}{VERIFY}?next=/admin/"), page.url
    page.fill("#id_code", totp_code(TOTPDevice.objects.get(user=root)))
    with page.expect_navigation():
        page.click("#verify-form button[type=submit]")
    assert page.url == f"{gunicorn_server.url}/admin/"

    used = entries("account.second_factor_used", root)
    assert [e["details"]["method"] for e in used] == ["recovery", "totp"]
    assert len(entries("account.second_factor_failed", root)) == 1
    assert len(entries("account.second_factor_enrolled", root)) == 1
    assert run_verify_log()[0] == 0


def test_reset_command_for_a_lost_device(root):
    from django.core.management import CommandError, call_command

    enrol_second_factor(root)
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("reset_second_factor", "nobody")
    call_command("reset_second_factor", "root")
    assert not second_factor.is_enrolled(root)
    (entry,) = entries("account.second_factor_removed", root)
    assert entry["actor"] is None
    with pytest.raises(CommandError, match="no second factor"):
        call_command("reset_second_factor", "root")


def test_one_step_of_clock_difference_is_allowed_either_way(root, alice, bob, dave):
    """A code from the step before or after now is taken; two steps away is not (tolerance 1, 30 s steps)."""
    devices = {u.username: second_factor.start_enrolment(u) for u in (root, alice, bob, dave)}
    step = devices["root"].step
    assert step == 30
    if step - time.time() % step < 2:  # not astride a step boundary
        time.sleep(step - time.time() % step + 0.05)
    now_t = int(time.time()) // step
    outcomes = {}
    for device, offset in zip(devices.values(), (-2, -1, 1, 2), strict=True):
        app = TOTP(device.bin_key, step)
        app.time = (now_t + offset) * step
        try:
            second_factor.enrol(user=device.user, code=f"{app.token():06d}")
            outcomes[offset] = True
        except second_factor.SecondFactorError:
            outcomes[offset] = False
    assert outcomes == {-2: False, -1: True, 1: True, 2: False}


def test_totp_keys_follow_a_secret_key_rotation(alice, settings, capsys):
    """A key encrypted under the old SECRET_KEY still gives codes while it is a fallback;
    reseal_credentials encrypts it again under the new one, after which the old key can go."""
    from django.core.management import call_command

    device, _ = enrol_second_factor(alice)
    raw = device.bin_key
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the new secret key", [old]
    assert TOTPDevice.objects.get(pk=device.pk).bin_key == raw
    call_command("reseal_credentials")
    assert "encrypted again 1 TOTP key(s)" in capsys.readouterr().out
    settings.SECRET_KEY_FALLBACKS = []
    assert TOTPDevice.objects.get(pk=device.pk).bin_key == raw
    answer = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "alice", "password": PASSWORD, "otp": totp_code(device)},
        format="json",
    )
    assert answer.status_code == 201, answer.content


def test_totp_keys_of_before_0022_are_encrypted_by_the_migration(transactional_db, alice):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    device, _ = enrol_second_factor(alice)
    raw = device.bin_key
    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0021_apitoken_mac_covers_revocation")])
    assert TOTPDevice.objects.get(pk=device.pk).key == raw.hex()  # as django-otp stored it
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    stored = TOTPDevice.objects.get(pk=device.pk)
    assert stored.key != raw.hex() and stored.bin_key == raw
    answer = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "alice", "password": PASSWORD, "otp": totp_code(device)},
        format="json",
    )
    assert answer.status_code == 201, answer.content


def test_a_sheet_of_before_the_sheets_were_bound_still_works(alice):
    """A sheet generated before the recovery_codes_generated entries bound their sheets (no ``bound``
    in the entry: its codes stored as an HMAC of the account and the code alone) keeps working."""
    from django.db import transaction
    from django_otp.plugins.otp_static.models import StaticDevice

    from custody import log

    enrol_second_factor(alice)
    legacy = second_factor.new_recovery_code()
    with transaction.atomic():
        log.append(
            "account.recovery_codes_generated",
            actor=alice,
            details={"user": {"id": alice.pk, "username": "alice"}, "count": 1, "reason": "regenerated"},
        )
        StaticToken.objects.filter(device__user=alice).delete()
        StaticDevice.objects.get(user=alice).token_set.create(
            token=second_factor.recovery_token(alice, legacy)
        )
    assert second_factor.recovery_generation(alice) is None
    assert second_factor.verify(user=alice, code=legacy).method == "recovery"
