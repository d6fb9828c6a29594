"""The `desktop` create options: what is accepted, the defaults, and every refusal (400
with a message naming the option), without a sandbox."""

from __future__ import annotations

import pytest

from console.desktop.config import DesktopConfig, parse
from console.errors import DomainError


def test_defaults_and_accepted_values():
    assert parse("base", None) is None
    assert parse("desktop", None) == DesktopConfig(width=1920, height=1080, dpi=96, display=1)
    asked = {"resolution": {"width": 1280, "height": 720}, "dpi": 144, "display": ":3"}
    assert parse("desktop", asked) == DesktopConfig(1280, 720, 144, 3)
    assert parse("desktop", {"resolution": None, "dpi": None, "display": None}) == DesktopConfig()


@pytest.mark.parametrize(
    ("template", "desktop", "words"),
    [
        ("base", {"dpi": 96}, "only supported for the desktop template"),
        ("desktop", [1], "must be an object"),
        ("desktop", {"depth": 24}, "unknown desktop option(s): depth"),
        ("desktop", {"resolution": {"width": 10, "height": 720}}, "width must be between"),
        ("desktop", {"resolution": {"width": 1280, "height": 9000}}, "height must be between"),
        ("desktop", {"resolution": {"width": 1280}}, "resolution must be {width, height}"),
        ("desktop", {"resolution": {"width": "1280", "height": 720}}, "must be an integer"),
        ("desktop", {"resolution": {"width": True, "height": 720}}, "must be an integer"),
        ("desktop", {"dpi": 0}, "dpi must be between"),
        ("desktop", {"display": "1"}, "must look like :1"),
        ("desktop", {"display": ":1.0"}, "must look like :1"),
        ("desktop", {"display": 1}, "must look like :1"),
    ],
)
def test_refusals(template, desktop, words):
    with pytest.raises(DomainError) as refused:
        parse(template, desktop)
    assert refused.value.code == "invalid_request"
    assert words in refused.value.message
