"""Who may see and do what. Fetch functions have the check built in.

A miss and a refusal look the same from outside (404): someone outside a case
must not learn that it, or anything in it, exists.
"""

from __future__ import annotations

import uuid

from django.http import Http404

from .models import Case, Evidence, Role


class Forbidden(Exception):
    """The user can see the object but may not do this (HTTP 403)."""


def visible_cases(user):
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if user.is_custody_admin:
        return Case.objects.all()
    return Case.objects.filter(membership__user=user)


def visible_evidence(user):
    return Evidence.objects.filter(case__in=visible_cases(user))


def _uuid(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise Http404("not found") from None


def get_case_for(user, case_id) -> Case:
    try:
        return visible_cases(user).get(pk=_uuid(case_id))
    except Case.DoesNotExist:
        raise Http404("case not found") from None


def get_evidence_for(user, evidence_id) -> Evidence:
    try:
        return (
            visible_evidence(user)
            .select_related("case", "blob", "custodian", "submitted_by")
            .get(pk=_uuid(evidence_id))
        )
    except Evidence.DoesNotExist:
        raise Http404("evidence not found") from None


def can_write_case(user, case: Case) -> bool:
    if not user.can_write:
        return False
    return user.is_custody_admin or case.membership_set.filter(user=user).exists()


def require_write(user, case: Case) -> None:
    if user.role == Role.AUDITOR:
        raise Forbidden("auditors have read-only access")
    if not can_write_case(user, case):
        raise Forbidden("you may not change this case")


def require_investigator_or_admin(user) -> None:
    if not user.can_write:
        raise Forbidden("auditors have read-only access")
