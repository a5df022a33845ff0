"""Who may see and do what. Fetch functions have the check built in.

A miss and a refusal look the same from outside (404): someone outside a case
must not learn that it, or anything in it, exists.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.http import Http404
from rest_framework.permissions import SAFE_METHODS, BasePermission

from . import log, projection
from .models import MEMBERSHIP_SEAL, Case, Evidence, LogEntry, Membership, Role, all_current


class Forbidden(Exception):
    """The user can see the object but may not do this (HTTP 403)."""


def current_memberships(memberships) -> list:
    """The memberships the server made (their HMAC) and has not removed since: a membership
    written into the database by anyone else opens nothing, nor does one put back, with its seal,
    after a later case.member_removed entry (one indexed query for all of them)."""
    intact = [m for m in memberships if m.seal_intact()]
    if not intact or all_current(*((MEMBERSHIP_SEAL, m) for m in intact)):
        return intact
    return [m for m in intact if all_current((MEMBERSHIP_SEAL, m))]  # only when one was put back


def member_case_ids(user) -> list:
    """The cases ``user`` is a member of, by the memberships the server made and kept."""
    return [m.case_id for m in current_memberships(Membership.objects.filter(user=user))]


def visible_cases(user):
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if user.is_custody_admin:
        return Case.objects.all()
    return Case.objects.filter(pk__in=member_case_ids(user))


def visible_evidence(user):
    return Evidence.objects.filter(case__in=visible_cases(user))


def _uuid(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise Http404("not found") from None


def client_address(request) -> str | None:
    """The address the request came from, as recorded in log entries (X-Forwarded-For only from a trusted proxy)."""
    from .login_limits import client_ip

    return client_ip(request)


def get_case_for(request, case_id) -> Case:
    """The case, if ``request.user`` may see it; 404 otherwise (a refusal is logged)."""
    pk = _uuid(case_id)
    try:
        return visible_cases(request.user).get(pk=pk)
    except Case.DoesNotExist:
        _log_refusal(request, "case", pk, case=Case.objects.filter(pk=pk).first())
        raise Http404("case not found") from None


def get_evidence_for(request, evidence_id) -> Evidence:
    """The evidence item, if ``request.user`` may see its case; 404 otherwise (a refusal is logged)."""
    pk = _uuid(evidence_id)
    try:
        return (
            visible_evidence(request.user)
            .select_related("case", "blob", "custodian", "submitted_by")
            .get(pk=pk)
        )
    except Evidence.DoesNotExist:
        _log_refusal(
            request, "evidence", pk, evidence=Evidence.objects.select_related("case").filter(pk=pk).first()
        )
        raise Http404("evidence not found") from None


def from_another_site(request) -> bool:
    """The browser says a page of another site started this request (Fetch Metadata, Sec-Fetch-Site).

    A link or image on another site makes the browser send the session
    cookie with its GET; such a request must not write log entries in the
    user's name. Browsers that send no Sec-Fetch-Site (old ones, scripts)
    are taken as same-site: the API's logged reads refuse a session GET
    outright (custody/api.py), this covers the web pages.
    """
    return request.META.get("HTTP_SEC_FETCH_SITE", "") in {"cross-site", "same-site"}


def _log_refusal(request, kind: str, pk: uuid.UUID, case=None, evidence=None) -> None:
    """An authenticated user asked for an id that is not theirs to see: log it, whether it exists or not.

    The requester gets the same 404 either way, and the log grows by one
    entry either way: were only real ids logged, the public checkpoint's
    size would tell a prober which ids exist. The entry names the id asked
    for (``details``) and, for a real one, its case and item, so the case's
    members and auditors see who knocked; the prober sees neither kind in
    full (entry_visible_to). Reads that another site's page made the user's
    browser send are not logged: they would put knocks in the log in the
    user's name.
    """
    user = request.user
    if not user.is_authenticated:
        return
    if request.method in SAFE_METHODS and from_another_site(request):
        return
    if evidence is not None:
        case = evidence.case
    # Appended here, not through services (which import this module): the
    # refusal changes no table, it only records who knocked.
    with transaction.atomic():
        entry = log.append(
            "access.refused",
            actor=user,
            case=case,
            evidence=evidence,
            client=client_address(request),
            details={"requested": kind, "id": str(pk)},
        )
        projection.apply(entry)


def can_write_case(user, case: Case) -> bool:
    if not user.can_write:
        return False
    return user.is_custody_admin or bool(current_memberships(case.membership_set.filter(user=user)))


def require_write(user, case: Case) -> None:
    if user.role == Role.AUDITOR:
        raise Forbidden("auditors have read-only access")
    if not can_write_case(user, case):
        raise Forbidden("you may not change this case")


def require_investigator_or_admin(user) -> None:
    if not user.can_write:
        raise Forbidden("auditors have read-only access")


READ_ONLY_MESSAGE = "auditors have read-only access"


class ReadOnlyForAuditors(BasePermission):
    """API default: a write (POST, PUT, PATCH, DELETE) by a read-only user is 403 before anything else.

    Checked before the body is parsed or validated, so an auditor learns
    nothing from a malformed write that a well-formed one would not tell.
    The role is read per request, so a user made auditor mid-upload stops
    there. Views that take POST for reading (a download with a CSRF token)
    set ``permission_classes`` without this one.
    """

    message = READ_ONLY_MESSAGE

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_authenticated and request.user.can_write)


def writers_only(view):
    """Web UI: the same rule for the views' POSTs (403 before the form is read)."""
    import functools

    from django.core.exceptions import PermissionDenied

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method not in SAFE_METHODS and not request.user.can_write:
            raise PermissionDenied(READ_ONLY_MESSAGE)
        return view(request, *args, **kwargs)

    return wrapper


# --- who may read which log entries ------------------------------------------

# Actions whose entries are written with public=True and readable by anyone.
PUBLIC_ACTIONS = {"result.announced"}


def visible_case_ids(user) -> set | None:
    """Case ids whose entries ``user`` may read in full; None means all."""
    if user.is_custody_admin:
        return None
    return set(visible_cases(user).values_list("pk", flat=True))


# Entries about accounts and tokens (usernames, roles, client addresses): in full to administrators only.
ACCOUNT_ACTION_PREFIXES = ("user.", "token.")


def is_account_entry(row: LogEntry) -> bool:
    return row.action.startswith(ACCOUNT_ACTION_PREFIXES)


def entry_visible_to(user, row: LogEntry, visible: set | None) -> bool:
    """Who may read an entry in full (others get its leaf hash only).

    Administrators: all. Account and token entries: administrators only.
    A refusal (``access.refused``): never to the one refused, who would
    otherwise see the refusal of an id that does not exist (no case) but
    not that of a real one (a case entry), and so tell which ids exist.
    Case entries: members of the case. Other entries: auditors and the actor.
    """
    if visible is None or row.action in PUBLIC_ACTIONS:
        return True
    if is_account_entry(row):
        return False
    if row.action == "access.refused" and row.actor_id == user.pk:
        return False
    if row.case_id is not None:
        return row.case_id in visible
    return user.role == "auditor" or row.actor_id == user.pk
