"""Console forms: accounts, teams, projects, members, invitations, API keys, audit filters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.utils import timezone

from console.models import KeyScope, Role


class ConsoleForm(forms.Form):
    """Labels without Django's trailing colon, to match the console's look."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class SignUpForm(ConsoleForm):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters, not a common password.",
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if get_user_model().objects.filter(username=email).exists():
            raise forms.ValidationError(
                "An account with this email already exists. Sign in instead."
            )
        return email

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            user = get_user_model()(
                username=cleaned.get("email", ""), email=cleaned.get("email", "")
            )
            try:
                password_validation.validate_password(password, user)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class TeamForm(ConsoleForm):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True}))


class ProjectForm(ConsoleForm):
    name = forms.CharField(
        max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. web-app"})
    )


ROLE_CHOICES = [(role.value, role.label) for role in Role]
EXPIRY_CHOICES = [
    ("", "Never"),
    ("1", "in 1 day"),
    ("7", "in 7 days"),
    ("30", "in 30 days"),
    ("90", "in 90 days"),
    ("365", "in 1 year"),
]


class MemberRoleForm(ConsoleForm):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class InvitationForm(ConsoleForm):
    email = forms.EmailField(
        required=False,
        help_text="Optional: a note of who the link is for. Anyone holding the link can use it.",
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        coerce=int,
        choices=[(1, "in 1 day"), (7, "in 7 days"), (30, "in 30 days")],
        initial=7,
    )


class ApiKeyForm(ConsoleForm):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. ci"}))
    scope = forms.ChoiceField(choices=KeyScope.choices, initial=KeyScope.FULL)
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")

    def expires_at(self):
        days = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(days=int(days)) if days else None


class ApiKeyApiForm(ConsoleForm):
    """Body of POST /v1/keys and /v1/keys/{id}/rotate: `{name?, scope?}`."""

    name = forms.CharField(max_length=100, required=False)
    scope = forms.ChoiceField(choices=KeyScope.choices, required=False)


class AuditFilterForm(ConsoleForm):
    """Every filter is served by an index: action is one of a fixed list, actor is a prefix
    (an exact name is a prefix of itself), dates are half-open UTC ranges on created_at."""

    action = forms.ChoiceField(required=False)
    actor = forms.CharField(
        required=False,
        max_length=200,
        label="Actor starts with",
        widget=forms.TextInput(attrs={"placeholder": "email or api key ns_…"}),
    )
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, actions: Sequence[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        action = self.fields["action"]
        assert isinstance(action, forms.ChoiceField)
        action.choices = [("", "All actions")] + [(a, a) for a in actions]

    def filter(self, events):
        if not self.is_valid():
            return events.none()
        data = self.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if actor := data["actor"].strip():
            events = events.filter(actor_label__startswith=actor)
        if data["since"]:
            events = events.filter(created_at__gte=_utc_midnight(data["since"]))
        if data["until"]:
            events = events.filter(created_at__lt=_utc_midnight(data["until"] + timedelta(days=1)))
        return events


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
