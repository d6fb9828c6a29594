"""`{{ membership.role|role_options }}`: the <option>s of a role <select>, built once per role.

The members page has a select per member; rendering four options with a comparison
each, for every row, was most of that page's time.
"""

from __future__ import annotations

from functools import cache

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from console.models import Role

register = template.Library()


@register.filter
def role_options(current: str) -> SafeString:
    return _options(str(current))


@cache
def _options(current: str) -> SafeString:
    return format_html_join(
        "",
        "{}",
        (
            (
                format_html(
                    '<option value="{}"{}>{}</option>',
                    value,
                    " selected" if value == current else "",
                    label,
                ),
            )
            for value, label in Role.choices
        ),
    )
