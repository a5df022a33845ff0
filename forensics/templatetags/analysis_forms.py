"""Template tags for the analysis forms and the live status of analyses on custody pages."""

from __future__ import annotations

from django import template
from django.urls import reverse

from ..forms import analyzer_forms

register = template.Library()


@register.inclusion_tag("forensics/_analysis_forms.html", takes_context=True)
def analysis_forms(context, case, evidence=None):
    """One form per analyzer that reads the item (or some item of the case), each in a <details>."""
    action = (
        reverse("evidence-analyse", args=[evidence.pk])
        if evidence
        else reverse("case-analyse", args=[case.pk])
    )
    return {
        "forms": analyzer_forms(case, evidence),
        "action": action,
        "csrf_token": context.get("csrf_token"),
        "scope": "item" if evidence else "case",
    }


@register.simple_tag
def case_analyses(case):
    """The case's analyses as its page lists them (forensics.views.case_analyses)."""
    from ..views import case_analyses as rows

    return rows(case)
