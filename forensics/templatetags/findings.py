"""Template tags that show findings in plain words (forensics/presentation.py does the work).

{% load findings %}
{% finding f analysis artifacts %}             one finding, readable, raw JSON one click away
{% analysis_summary analysis as s %}           fired indicators and key facts of one analysis
{% item_summary evidence as s %}               the same over every completed analysis of an item
{{ seconds|clock }}  {{ rates|rates_sentence }}
"""

from __future__ import annotations

from django import template
from django.urls import reverse

from forensics import presentation
from forensics.models import Analysis

register = template.Library()


def _artifact_url(analysis):
    if analysis is None or getattr(analysis, "pk", None) is None:
        return None
    return lambda digest: reverse("analysis-artifact", args=[analysis.pk, digest])


@register.simple_tag
def finding(f, analysis=None, artifacts=None, index=None):
    """``artifacts``: the analysis's artifacts (the API's list of {name, media_type, sha256});
    ``index``: the finding's place in the result, for its anchor (#finding-3)."""
    by_digest = {a["sha256"]: a for a in artifacts or [] if isinstance(a, dict) and "sha256" in a}
    return presentation.finding_html(
        f,
        artifact_url=_artifact_url(analysis),
        artifacts=by_digest,
        anchor=f"finding-{index}" if index is not None else "",
    )


@register.simple_tag
def value(v, unit=None):
    """Any JSON value (parameters, libraries...) in words and small tables."""
    return presentation.value_html(v, None, unit)


@register.simple_tag
def analysis_summary(analysis, result=None):
    if result is None:
        result = presentation.result_of(analysis) if analysis.status == Analysis.Status.SUCCEEDED else None
    return presentation.summary([(analysis, result)] if result else [])


@register.simple_tag
def item_summary(evidence):
    """Over the item's completed analyses (the caller has already checked the user may see the item)."""
    rows = evidence.analyses.filter(status=Analysis.Status.SUCCEEDED, envelope__isnull=False).order_by(
        "requested_at"
    )
    return presentation.summary((a, presentation.result_of(a)) for a in rows)


@register.filter
def clock(seconds):
    try:
        return presentation.clock(seconds)
    except ValueError:
        return ""


@register.filter
def rates_sentence(rates):
    return presentation.rates_sentence(rates)
