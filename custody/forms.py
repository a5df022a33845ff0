from django import forms

from .models import Role, User


class CaseForm(forms.Form):
    reference = forms.CharField(max_length=100, help_text="e.g. 2026-0042")
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class EvidenceUploadForm(forms.Form):
    file = forms.FileField(allow_empty_file=True)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    source = forms.CharField(max_length=500, required=False, help_text="where and how it was obtained")
    sha256 = forms.CharField(
        max_length=71,
        required=False,
        label="SHA-256 (optional)",
        help_text="if you computed it: a mismatch is refused and nothing is kept",
    )


class DownloadForm(forms.Form):
    reason = forms.CharField(max_length=1000, help_text="recorded in the custody log")


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)

    def clean_username(self):
        try:
            return User.objects.get(username=self.cleaned_data["username"], is_active=True)
        except User.DoesNotExist:
            raise forms.ValidationError("no such active user") from None


ROLE_CHOICES = Role.choices


class TransferForm(forms.Form):
    to_user = forms.ModelChoiceField(
        queryset=User.objects.none(), label="Hand over to", to_field_name="username"
    )
    purpose = forms.CharField(max_length=500, help_text="e.g. audio analysis at the lab")
    location = forms.CharField(max_length=500, help_text="where the handover takes place")

    def __init__(self, *args, case=None, exclude=None, **kwargs):
        super().__init__(*args, **kwargs)
        if case is not None:
            candidates = case.members.filter(is_active=True, role__in=[Role.INVESTIGATOR, Role.ADMIN])
            if exclude is not None:
                candidates = candidates.exclude(pk=exclude.pk)
            self.fields["to_user"].queryset = candidates.order_by("username")


class TransferDecisionForm(forms.Form):
    note = forms.CharField(max_length=1000, required=False, label="Note (recorded in the log)")


class CaseFilterForm(forms.Form):
    """The case list's filters (GET), combined with its ``q`` search; every field is optional."""

    MEDIA = [("", "any"), ("audio/", "audio"), ("image/", "images"), ("video/", "video"), ("text/", "text")]

    mine = forms.ChoiceField(
        choices=[("", "all I can see"), ("member", "I am a member of"), ("created", "I created")],
        required=False,
        label="Cases",
    )
    media = forms.ChoiceField(choices=MEDIA, required=False, label="With items of type")
    handover = forms.BooleanField(required=False, label="With a handover waiting")
    analyses = forms.ChoiceField(
        choices=[("", "any"), ("pending", "queued or running"), ("failed", "failed")],
        required=False,
        label="With analyses",
    )
    since = forms.DateField(
        required=False, label="Created from", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "must not be before the start date")
        return data
