"""A form for each analyzer, made from its declared PARAMETERS (forensics/analyzers/base.py).

One field per parameter: a number with its range, a choice, a checkbox, a text,
or, for an "evidence" parameter, a list of the case's other items of a type
the analyzer reads there (the reference recording of audio.context), named by
original name and SHA-256. Values go to forensics.services.request_analysis,
which checks them again: the form is for people, the service is the rule.
"""

from __future__ import annotations

import re

from django import forms

from custody.models import Case, Evidence

from . import analyzers
from .services import reference_accepts, reference_types

# Said the same way for an id of another case, of this case but of the
# wrong type, or of nothing at all: the answer tells nothing about other cases.
NOT_LISTED = "choose one of the listed items; other values are not accepted here"


def form_prefix(analyzer_name: str) -> str:
    """A prefix for field names and ids that is unique per analyzer on a page (audio.signal -> audio_signal)."""
    return re.sub(r"[^a-z0-9]+", "_", analyzer_name.lower()).strip("_")


def reference_candidates(module, rule: dict, case: Case, subject: Evidence | None):
    """The case's items an "evidence" parameter may name: the analyzer reads their type, and not the subject."""
    items = case.evidence.select_related("blob").order_by("original_name", "received_at")
    if subject is not None:
        items = items.exclude(pk=subject.pk)
    allowed = [e.pk for e in items if reference_accepts(module, rule, e.media_type)]
    return (
        Evidence.objects.filter(pk__in=allowed)
        .select_related("blob")
        .order_by("original_name", "received_at")
    )


class EvidenceChoiceField(forms.ModelChoiceField):
    def to_python(self, value):
        # Anything that is not one of the listed ids, a malformed one included, gets the same answer.
        try:
            return super().to_python(value)
        except forms.ValidationError:
            raise forms.ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice"
            ) from None

    def label_from_instance(self, obj: Evidence) -> str:
        return f"{obj.original_name} ({obj.media_type}, sha256 {obj.blob_id[:12]}…)"


def _range_text(rule: dict) -> str:
    parts = []
    if "min" in rule and "max" in rule:
        parts.append(f"{rule['min']} to {rule['max']}")
    elif "min" in rule:
        parts.append(f"at least {rule['min']}")
    elif "max" in rule:
        parts.append(f"at most {rule['max']}")
    if "default" in rule and rule["type"] != "evidence":
        default = rule["default"]
        parts.append(f"default {str(default).lower() if isinstance(default, bool) else default}")
    return "; ".join(parts)


def _field(module, name: str, rule: dict, case: Case, subject: Evidence | None) -> forms.Field:
    kind = rule["type"]
    has_default = "default" in rule
    help_text = rule.get("help", "")
    extra = _range_text(rule)
    if extra:
        help_text = f"{help_text} ({extra})" if help_text else extra
    common = {"label": name, "help_text": help_text}
    if kind == "evidence":
        types = ", ".join(reference_types(module, rule))
        return EvidenceChoiceField(
            queryset=reference_candidates(module, rule, case, subject),
            required=not has_default,
            empty_label="— choose an item —",
            error_messages={"invalid_choice": NOT_LISTED},
            **(common | {"help_text": f"{help_text} — another item of this case ({types})"}),
        )
    if kind == "bool":
        return forms.BooleanField(required=False, initial=rule.get("default", False), **common)
    initial = rule.get("default")
    if "choices" in rule:
        coerce = {"int": int, "float": float}.get(kind, str)
        return forms.TypedChoiceField(
            choices=[(c, str(c)) for c in rule["choices"]],
            coerce=coerce,
            required=not has_default,
            initial=initial,
            **common,
        )
    bounds = {"min_value": rule.get("min"), "max_value": rule.get("max")}
    if kind == "int":
        return forms.IntegerField(required=not has_default, initial=initial, **bounds, **common)
    if kind == "float":
        return forms.FloatField(required=not has_default, initial=initial, **bounds, **common)
    if kind == "str":
        return forms.CharField(required=not has_default, initial=initial, max_length=1000, **common)
    raise ValueError(f"{module.NAME}: parameter {name!r} has unknown type {kind!r}")


class AnalysisParametersForm(forms.Form):
    """The parameters of one analyzer, for one item (``subject``) or every item of ``case``.

    Fields are prefixed with the analyzer's name, so that a page can hold one
    form per analyzer; ``analyzer`` is posted along as a hidden field.
    """

    def __init__(self, module, *, case: Case, subject: Evidence | None = None, data=None):
        super().__init__(data, prefix=form_prefix(module.NAME))
        self.module = module
        # Why the analyzer cannot run here yet (a required item to choose, and none to choose from).
        self.unavailable = ""
        for name, rule in module.PARAMETERS.items():
            field = self.fields[name] = _field(module, name, rule, case, subject)
            if rule["type"] == "evidence" and field.required and not field.queryset.exists():
                types = ", ".join(reference_types(module, rule))
                self.unavailable = f"{name}: this case has no other item of a type it reads ({types}) yet"

    def parameters(self) -> dict:
        """The cleaned values as the service takes them; an empty optional field keeps its default."""
        out = {}
        for name, rule in self.module.PARAMETERS.items():
            value = self.cleaned_data.get(name)
            if rule["type"] == "bool":
                out[name] = bool(value)
            elif value is None or value == "":
                continue  # the service fills in the default
            elif rule["type"] == "evidence":
                out[name] = str(value.pk)
            else:
                out[name] = value
        return out


def forms_for(modules, *, case: Case, subject: Evidence | None = None, bound=None) -> list:
    """(module, form) for each analyzer; ``bound``: a form already filled in, shown in its module's place."""
    return [
        (
            m,
            bound
            if bound is not None and bound.module.NAME == m.NAME
            else AnalysisParametersForm(m, case=case, subject=subject),
        )
        for m in modules
    ]


def applicable(media_types) -> list:
    """The installed analyzers that read at least one of these media types, by name."""
    return sorted(
        (m for m in analyzers.registry().values() if any(analyzers.accepts(m, t) for t in media_types)),
        key=lambda m: m.NAME,
    )


def analyzer_forms(case: Case, subject: Evidence | None = None, bound=None) -> list:
    """(module, form) for each analyzer that reads the item (or, with no item, some item of the case)."""
    if subject is not None:
        media_types = {subject.media_type}
    else:
        media_types = set(case.evidence.values_list("media_type", flat=True))
    return forms_for(applicable(media_types), case=case, subject=subject, bound=bound)
