"""Console forms for sandbox pages: the list filters, "New sandbox", extend timeout, exec.

They only parse what a person types (KEY=value lines, seconds); the domain layer in
console/sandboxes/service.py validates the values, so the console and /v1 refuse the same input.
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings

from console.errors import DomainError
from console.models import SandboxStatus, TimeoutAction
from console.sandboxes import service as sandboxes


def parse_pairs(text: str, label: str) -> dict[str, str]:
    """`KEY=value` lines (blank lines and `#` comments skipped) into a dict."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise forms.ValidationError(f"{label} line {number}: write it as KEY=value")
        pairs[key] = value.strip()
    return pairs


def max_timeout_seconds() -> int:
    return settings.MAX_SANDBOX_TIMEOUT_MS // 1000


class SandboxFilterForm(forms.Form):
    # Like `nullspace sandbox list`, the default leaves destroyed sandboxes out.
    state = forms.ChoiceField(
        required=False,
        choices=[("", "Not destroyed"), *SandboxStatus.choices, ("all", "All, with destroyed")],
    )
    template = forms.CharField(required=False, max_length=200)
    metadata = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "key=value, key2=value2"}),
    )

    def clean_metadata(self) -> dict[str, str]:
        pairs = parse_pairs(self.cleaned_data["metadata"].replace(",", "\n"), "Metadata")
        try:
            # The same key rules as the API's `metadata` filter (no ORM lookups in keys).
            return sandboxes.metadata_filter(json.dumps(pairs))
        except DomainError as error:
            raise forms.ValidationError(error.message) from None


class SandboxForm(forms.Form):
    template = forms.CharField(max_length=200, initial="base")
    envs = forms.CharField(
        label="Environment variables",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "API_URL=https://example.test"}),
        help_text="One KEY=value per line.",
    )
    metadata = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "team=eval"}),
        help_text="One key=value per line; the list can filter on it.",
    )
    timeout = forms.IntegerField(
        label="Timeout (seconds)", min_value=1, initial=300, help_text="Counted from creation."
    )
    on_timeout = forms.ChoiceField(
        label="On timeout",
        choices=[(TimeoutAction.DESTROY, "Destroy"), ("pause", "Pause (keep the workspace)")],
        initial=TimeoutAction.DESTROY,
    )
    auto_resume = forms.BooleanField(
        required=False, help_text="Preview traffic wakes the sandbox when it is paused."
    )

    def clean_envs(self) -> dict[str, str]:
        return parse_pairs(self.cleaned_data["envs"], "Environment")

    def clean_metadata(self) -> dict[str, str]:
        return parse_pairs(self.cleaned_data["metadata"], "Metadata")

    def clean_timeout(self) -> int:
        value = self.cleaned_data["timeout"]
        if value > max_timeout_seconds():
            raise forms.ValidationError(f"At most {max_timeout_seconds()} seconds.")
        return value


class TimeoutForm(forms.Form):
    timeout = forms.IntegerField(label="Seconds from now", min_value=1, initial=600)

    def clean_timeout(self) -> int:
        value = self.cleaned_data["timeout"]
        if value > max_timeout_seconds():
            raise forms.ValidationError(f"At most {max_timeout_seconds()} seconds.")
        return value


class ExecForm(forms.Form):
    command = forms.CharField(
        max_length=4000,
        widget=forms.TextInput(
            attrs={"placeholder": "echo hello", "autocomplete": "off", "spellcheck": "false"}
        ),
    )
