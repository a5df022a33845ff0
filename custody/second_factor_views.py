"""Web pages of the second factor: account, enrolment, the code after the password, recovery codes.

Every change goes through custody.second_factor's services, which log it.
"""

from __future__ import annotations

import io

import django_otp
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST

from . import second_factor as sf
from .permissions import Forbidden, client_address


def _next_url(request) -> str:
    """Where to go after the code: the page asked for, if it is one of ours; else the case list."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/"


def _qr_svg(data: str) -> str:
    """The otpauth:// URI as an inline SVG (paths only: no script, no style, so the CSP allows it)."""
    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=12).save(out)
    svg = out.getvalue().decode()
    return svg[svg.index("<svg") :]


def _signed_in(request, device) -> None:
    """Mark this session as having given its second factor, under a new session key."""
    request.session.cycle_key()
    django_otp.login(request, device)


def _show_codes(request, codes: list[str], heading: str):
    return render(
        request,
        "custody/recovery_codes.html",
        {"codes": [sf.show_code(c) for c in codes], "heading": heading, "next": _next_url(request)},
    )


@login_required
def account(request):
    user = request.user
    return render(
        request,
        "custody/account.html",
        {
            "enrolled": sf.is_enrolled(user),
            "required": sf.required_for(user),
            "recovery_codes_left": sf.recovery_codes_left(user),
            "code_count": sf.RECOVERY_CODE_COUNT,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def enrol(request):
    user = request.user
    if sf.is_enrolled(user):
        messages.info(request, "You already have a second factor.")
        return redirect("account")
    error, status = "", 200
    if request.method == "POST":
        try:
            device, codes = sf.enrol(
                user=user, code=request.POST.get("code", ""), client=client_address(request)
            )
        except sf.SecondFactorError as exc:
            error, status = exc.detail, exc.status
        except Forbidden as exc:
            raise PermissionDenied(str(exc)) from None
        else:
            _signed_in(request, device)
            return _show_codes(request, codes, "Second factor enrolled")
    device = sf.start_enrolment(user)
    uri = device.config_url
    return render(
        request,
        "custody/second_factor_enrol.html",
        {
            "qr_svg": mark_safe(_qr_svg(uri)),  # noqa: S308 - made by qrcode from our own URI: paths only
            "secret": sf.base32_secret(device),
            "uri": uri,
            "error": error,
            "required": sf.required_for(user),
            "next": _next_url(request),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def verify(request):
    user = request.user
    if not sf.is_enrolled(user) or user.is_verified():
        return redirect(_next_url(request))
    error, status = "", 200
    if request.method == "POST":
        try:
            checked = sf.verify(user=user, code=request.POST.get("code", ""), client=client_address(request))
        except sf.SecondFactorError as exc:
            error, status = exc.detail, exc.status
        else:
            _signed_in(request, checked.device)
            if checked.method == "recovery":
                left = sf.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You used a recovery code; {left} left. Make new ones from your account page if few are left.",
                )
            return redirect(_next_url(request))
    return render(
        request,
        "custody/second_factor_verify.html",
        {"error": error, "next": _next_url(request)},
        status=status,
    )


@login_required
@require_POST
def recovery_codes(request):
    try:
        codes = sf.regenerate_recovery_codes(
            user=request.user, code=request.POST.get("code", ""), client=client_address(request)
        )
    except sf.SecondFactorError as exc:
        messages.error(request, exc.detail)
        return redirect("account")
    return _show_codes(request, codes, "New recovery codes")


@login_required
@require_POST
def remove(request):
    try:
        sf.remove(
            actor=request.user,
            user=request.user,
            code=request.POST.get("code", ""),
            client=client_address(request),
        )
    except sf.SecondFactorError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, "Second factor removed.")
    return redirect("account")
