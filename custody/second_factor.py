"""Second factor for web logins: TOTP (django-otp) with single-use recovery codes.

Policy. Administrators (role admin, staff or superuser) must have a second
factor: until they have enrolled one, every page sends them to enrolment,
the admin site included. Everybody else may enrol from their account page.
Whoever has enrolled must give a code (from the authenticator app, or one of
the recovery codes) after the password before any other page works. API
tokens are unchanged: a request with a token needs no code, and a session
that has not given its code counts for nothing on the API. A new token for
an account with a second factor needs a code too (api.TokenView), or the
password alone would buy what the web asks a code for.

Wrong codes are limited by django-otp's throttling: after n wrong codes in a
row on a device, the next attempt is refused, even with the right code,
until 2**(n-1) seconds (OTP_TOTP_THROTTLE_FACTOR, OTP_STATIC_THROTTLE_FACTOR)
have passed since the last failure. The count lives in the device's row, so
every server process sees it. Wrong passwords stay with django-axes.

The log. Enrolment, removal, new recovery codes, each code accepted and each
code refused are log entries (``account.second_factor_*``,
``account.recovery_codes_generated``), written in the same transaction as the
change. They hold no secret. Whether an account has a second factor in force
is a custody fact: the enrolment and removal entries write the account's
``second_factor`` flag through the projection (projection.apply), so
``rebuild_state`` restores it and ``verify_log`` compares it with the log. The
devices themselves (the TOTP key, stored encrypted under SECRET_KEY and bound
to its device row, models.seal_totp_key; the recovery codes, stored as their
HMAC) are credentials, like password hashes: they are not custody facts, so
the projection has no table for them (projection.TABLES) and ``verify_log``
has nothing of them to compare with the log. An account whose flag is set but
whose devices are gone (a rebuilt database, or rows deleted behind the server)
is asked for a code it cannot give: it stays refused, never let in on the
password alone, until an administrator resets its second factor
(``manage.py reset_second_factor``, logged as a removal) and it enrols again.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from base64 import b32encode
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from . import log, projection
from .models import Role, User, seal_totp_key
from .models import SealedTOTPDevice as TOTPDevice
from .permissions import Forbidden
from .projection import log_subject

logger = logging.getLogger(__name__)

RECOVERY_CODE_COUNT = 10
# 10 random bytes: 16 base32 characters (StaticToken's longest), 80 bits.
RECOVERY_CODE_BYTES = 10
TOTP_DEVICE_NAME = "authenticator app"
STATIC_DEVICE_NAME = "recovery codes"


class SecondFactorError(Exception):
    """A refused code or request: ``status`` is the HTTP status to answer with."""

    def __init__(self, detail: str, status: int = 400):
        super().__init__(detail)
        self.detail = detail
        self.status = status


# --- who needs what ---------------------------------------------------------


def required_for(user) -> bool:
    """Administrators must have a second factor."""
    return bool(
        user.is_authenticated
        and user.is_active
        and (user.role == Role.ADMIN or user.is_staff or user.is_superuser)
    )


def totp_device(user, *, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("pk").first()


def is_enrolled(user) -> bool:
    """Whether a second factor is in force: the account's sealed flag, not whether device rows exist
    (devices deleted in the database must not make the password alone enough again)."""
    return bool(user.is_authenticated and User.objects.filter(pk=user.pk, second_factor=True).exists())


def without_device(users):
    """The accounts of ``users`` (a queryset) with a second factor in force (the flag, from the log)
    and no confirmed authenticator app: devices deleted in the database, or tables rebuilt from the
    log, which does not hold them. Refused whatever code they type, until reset_second_factor."""
    devices = TOTPDevice.objects.using(users.db).filter(confirmed=True).values("user_id")
    return users.filter(second_factor=True).exclude(pk__in=devices)


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def pending_step(user) -> str | None:
    """What a signed-in user whose session has given no code must do first: 'verify', 'enrol' or nothing."""
    if not user.is_authenticated or user.is_verified():
        return None
    if is_enrolled(user):
        return "verify"
    if required_for(user):
        return "enrol"
    return None


# --- codes --------------------------------------------------------------------


def normalise(code: str) -> str:
    """What the user typed, without the spaces and dashes codes are shown with."""
    return "".join(ch for ch in str(code) if ch not in " -\t").lower()


def is_totp_code(code: str) -> bool:
    return len(code) in (6, 8) and code.isascii() and code.isdigit()


def new_recovery_code() -> str:
    return b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode().lower()


def recovery_token(user, code: str, secret=None, generation: int | None = None) -> str:
    """How a recovery code is stored: an HMAC under SECRET_KEY of the account, the log index of the
    account.recovery_codes_generated entry that made its sheet (``generation``; None for a sheet made
    before the entries were bound so) and the code, in the 16 characters django-otp keeps (64 bits).
    The table holds no code anyone can type, and the stored forms of a replaced sheet, written back,
    are no codes of the current one."""
    what = (
        f"{user.pk}:{normalise(code)}" if generation is None else f"{user.pk}:{generation}:{normalise(code)}"
    )
    digest = salted_hmac(
        "custody.recovery_code", what, secret=secret or settings.SECRET_KEY, algorithm="sha256"
    )
    return digest.hexdigest()[:16]


def recovery_generation(user) -> int | None:
    """The log index of the account's newest account.recovery_codes_generated entry if it binds its
    sheet (``bound``), else None (a sheet of before, stored in the old form): one indexed query."""
    from .models import LogEntry

    newest = (
        LogEntry.objects.filter(subject=log_subject("recovery", user.pk))
        .order_by("-index")
        .values_list("index", "leaf")
        .first()
    )
    if newest is None or not (json.loads(bytes(newest[1])).get("details") or {}).get("bound"):
        return None
    return newest[0]


def recovery_tokens(user, code: str) -> list[str]:
    """The stored forms of ``code`` in the current sheet, under SECRET_KEY and each of
    SECRET_KEY_FALLBACKS."""
    generation = recovery_generation(user)
    return [
        recovery_token(user, code, secret, generation)
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ]


def show_code(code: str) -> str:
    """A recovery code as shown: groups of four."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def base32_secret(device: TOTPDevice) -> str:
    secret = b32encode(device.bin_key).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@dataclass
class Checked:
    device: TOTPDevice | StaticDevice
    method: str  # "totp" or "recovery"


def _user_ref(user: User) -> dict:
    return {"id": user.pk, "username": user.get_username()}


def _refuse_if_throttled(device, method: str | None = None) -> None:
    """django-otp's throttle (in the device row), and with ``method`` the signed log's (which
    nobody sets back in the table): refused with 429 until the later of the two allows a try."""
    allowed, info = device.verify_is_allowed()
    locked_until = None if allowed else info["locked_until"]
    if method is not None:
        logged = _locked_until_by_the_log(device, method)
        if logged is not None and (locked_until is None or logged > locked_until):
            locked_until = logged
    if locked_until is not None:
        wait = (locked_until - timezone.now()).total_seconds()
        if wait > 0 or not allowed:
            seconds = max(1, int(wait + 0.999))
            raise SecondFactorError(
                f"too many wrong codes in a row: try again in {seconds} seconds", status=429
            )


# How far back the log is read for the throttle and the last step: 2**31 seconds is longer than
# anyone waits.
THROTTLE_LOOKBACK = 32


def _locked_until_by_the_log(device, method: str):
    """The throttle as the signed log has it: after n wrong codes of this method in a row (its
    account.second_factor_failed entries since its last account.second_factor_used), none until
    factor * 2**(n-1) seconds after the last. django-otp keeps the count in the device row, which
    anyone with the database can set back; the log's entries hold it too. One indexed query."""
    import datetime as dt

    from .models import LogEntry

    rows = (
        LogEntry.objects.filter(subject=log_subject("otp", device.user_id))
        .order_by("-index")
        .values_list("action", "time", "leaf")[:THROTTLE_LOOKBACK]
    )
    failures, last = 0, None
    for action, time, leaf in rows:
        if (json.loads(bytes(leaf)).get("details") or {}).get("method") != method:
            continue
        if action != "account.second_factor_failed":
            break
        failures += 1
        last = last or time
    if not failures:
        return None
    return last + dt.timedelta(seconds=device.get_throttle_factor() * 2 ** (failures - 1))


def _refuse_unsealed_key(device) -> None:
    if not device.key_intact():
        logger.error(
            "second factor of user %s refused: its TOTP key was not stored by this server", device.user_id
        )
        raise SecondFactorError(
            "this account's second factor was changed in the database: an administrator must reset it "
            "(manage.py reset_second_factor), then enrol again",
            status=409,
        )


def _check_code(
    user: User, code: str, *, purpose: str, client: str | None, totp_only: bool = False
) -> Checked:
    """Check a code against the user's TOTP device or recovery codes and log the outcome.

    Runs inside the caller's transaction, which must commit even when the code
    is wrong (the failure count and the entry): wrong codes return through
    ``SecondFactorError`` raised by the caller after commit, see ``_outcome``.
    """
    code = normalise(code)
    if not code:
        raise SecondFactorError("enter the code from your authenticator app or a recovery code")
    if is_totp_code(code):
        device, method = (
            TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first(),
            "totp",
        )
    elif totp_only:
        raise SecondFactorError("enter the current code from your authenticator app (six digits)")
    else:
        device, method = (
            StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).first(),
            "recovery",
        )
    if device is None:
        # Refused, whichever code is typed: the password alone must not become enough.
        if user.is_authenticated and without_device(User.objects.filter(pk=user.pk)).exists():
            raise SecondFactorError(
                "this account's second factor is missing from the database: an administrator must reset it "
                "(manage.py reset_second_factor), then enrol again",
                status=409,
            )
        if method == "recovery":
            raise SecondFactorError("this account has no recovery codes left; use the authenticator app")
        raise SecondFactorError("this account has no second factor")
    if method == "totp":
        _refuse_unsealed_key(device)
    _refuse_if_throttled(device, method)
    details = {"user": _user_ref(user), "method": method, "purpose": purpose}
    if method == "recovery":
        # Stored as their HMAC (recovery_token): a code read from the table, or a row inserted there,
        # is no code. The stored form of the code typed, under the current or an earlier key:
        candidates = recovery_tokens(user, code)
        stored = device.token_set.filter(token__in=candidates).values_list("token", flat=True)
        code = next(iter(stored), candidates[0])
    if not device.verify_token(code) or (method == "totp" and _step_used_before(user, device.last_t)):
        log.append("account.second_factor_failed", actor=user, client=client, details=details)
        return Checked(device=None, method=method)
    if method == "recovery":
        details["recovery_codes_left"] = device.token_set.count()
    else:
        details["step"] = device.last_t
    log.append("account.second_factor_used", actor=user, client=client, details=details)
    return Checked(device=device, method=method)


def _step_used_before(user, step: int) -> bool:
    """Whether a TOTP code of ``step`` (or an earlier one) was already taken, by the signed log's
    newest account.second_factor_used entry of a TOTP code: the device's ``last_t``, which
    django-otp checks, is a column anyone with the database can set back. One indexed query."""
    from .models import LogEntry

    used = LogEntry.objects.filter(subject=log_subject("otp", user.pk), action="account.second_factor_used")
    for leaf in used.order_by("-index").values_list("leaf", flat=True)[:THROTTLE_LOOKBACK]:
        details = json.loads(bytes(leaf)).get("details") or {}
        if details.get("method") == "totp" and isinstance(details.get("step"), int):
            return step <= details["step"]
    return False


def _wrong(checked: Checked) -> None:
    if checked.device is None:
        what = "recovery code" if checked.method == "recovery" else "code"
        raise SecondFactorError(f"wrong or already used {what}")


# --- services: check, change, log; one transaction ------------------------------


def start_enrolment(user: User) -> TOTPDevice:
    """The unconfirmed TOTP device the enrolment page shows (made on first visit).

    Not a log entry: an unconfirmed device does nothing until its first code
    confirms it, and that is the enrolment entry.
    """
    if is_enrolled(user):
        raise SecondFactorError("you already have a second factor", status=409)
    device = totp_device(user, confirmed=False)
    if device is None:
        # The key is made here and stored encrypted, bound to the row (models.seal_totp_key), so the
        # row is made first: the table never holds the key itself (the placeholder opens nothing).
        with transaction.atomic():
            device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False, key="00")
            device.key = seal_totp_key(os.urandom(20), device)
            device.save(update_fields=["key"])
    return device


def enrol(*, user: User, code: str, client: str | None = None) -> tuple[TOTPDevice, list[str]]:
    """Confirm the pending TOTP device with its first code; make recovery codes. Returns (device, codes)."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if not locked.is_active:
            raise Forbidden("inactive account")
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise SecondFactorError("you already have a second factor", status=409)
        device = (
            TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
        )
        if device is None:
            raise SecondFactorError("open the enrolment page first: it shows the key to add to your app")
        code = normalise(code)
        if not is_totp_code(code):
            raise SecondFactorError("enter the six-digit code your authenticator app shows")
        _refuse_unsealed_key(device)
        _refuse_if_throttled(device)
        ok = device.verify_token(code)
        if ok:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            # The entry first, then the flag it implies (projection): the grants' seal binds its
            # index (a flag set back with the seal of before is refused, as this entry is later).
            entry = log.append(
                "account.second_factor_enrolled",
                actor=user,
                client=client,
                details={"user": _user_ref(user), "method": "totp"},
            )
            projection.apply(entry)
            user.second_factor = True
            codes = _replace_recovery_codes(user, client=client, reason="enrolment")
    if not ok:
        # Not logged: no second factor is in force yet; the throttle still counts.
        raise SecondFactorError("wrong code: check the app's clock and that you added this key")
    return device, codes


def _replace_recovery_codes(user: User, *, client: str | None, reason: str) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=STATIC_DEVICE_NAME, confirmed=True)
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    # The entry first: the sheet's stored forms bind its index (``bound``: the sheet is stored so).
    entry = log.append(
        "account.recovery_codes_generated",
        actor=user,
        client=client,
        details={"user": _user_ref(user), "count": len(codes), "reason": reason, "bound": True},
    )
    StaticToken.objects.bulk_create(
        StaticToken(device=device, token=recovery_token(user, c, generation=entry.index)) for c in codes
    )
    return codes


def verify(*, user: User, code: str, client: str | None = None, purpose: str = "login") -> Checked:
    """A code given after the password (web login, or ``api_token``). Returns the device that took it; wrong codes raise."""
    with transaction.atomic():
        checked = _check_code(user, code, purpose=purpose, client=client)
    _wrong(checked)
    return checked


def regenerate_recovery_codes(*, user: User, code: str, client: str | None = None) -> list[str]:
    """New recovery codes (the old ones stop working), after a code from the authenticator app."""
    with transaction.atomic():
        checked = _check_code(user, code, purpose="recovery_codes", client=client, totp_only=True)
        if checked.device is not None:
            codes = _replace_recovery_codes(user, client=client, reason="regenerated")
    _wrong(checked)
    return codes


def remove(*, actor: User | None, user: User, code: str = "", client: str | None = None) -> None:
    """Remove a user's second factor: the user with a code, or an administrator (or the CLI) for another user.

    An administrator who removes their own is sent to enrol a new one at once.
    """
    if actor is not None and actor.pk != user.pk and not actor.is_custody_admin:
        raise Forbidden("only administrators remove another user's second factor")
    with transaction.atomic():
        checked = None
        if actor is not None and actor.pk == user.pk:
            checked = _check_code(user, code, purpose="removal", client=client)
        if checked is None or checked.device is not None:
            locked = User.objects.select_for_update().get(pk=user.pk)
            # Nothing to remove, unless the flag is an earlier state the log no longer vouches for
            # (cleared in the database with an earlier seal): the removal entry makes the account's
            # grants what the log says again. (After rebuild_state the flag is set, as the log says,
            # and the devices are gone: this removal is how such an account gets back in.)
            nothing = not locked.second_factor and not TOTPDevice.objects.filter(user=user).exists()
            if nothing and locked.grants_current():
                raise SecondFactorError("this account has no second factor", status=404)
            TOTPDevice.objects.filter(user=user).delete()
            StaticDevice.objects.filter(user=user).delete()
            entry = log.append(
                "account.second_factor_removed",
                actor=actor,
                client=client,
                details={"user": _user_ref(user)},
            )
            projection.apply(entry)
            user.second_factor = False
    if checked is not None:
        _wrong(checked)


# --- the gate -------------------------------------------------------------------


class SecondFactorMiddleware:
    """Sends a signed-in user who still owes a code (or an enrolment) to that page, and nowhere else.

    After django-otp's OTPMiddleware, which tells whether this session gave a
    code. On the API the session of such a user is dropped (the request is
    anonymous): a token still works, as it needs no second factor.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            step = pending_step(user)
            if step is not None:
                answer = self._gate(request, step)
                if answer is not None:
                    return answer
        return self.get_response(request)

    def _gate(self, request, step: str):
        if request.path.startswith("/api/"):
            request.user = AnonymousUser()
            return None
        target = reverse("second-factor-verify" if step == "verify" else "second-factor-enrol")
        if request.path in (target, reverse("logout")):
            return None
        url = target
        if request.method == "GET":
            url += "?next=" + quote(request.get_full_path(), safe="/")
        return redirect(url)
