"""The `desktop` object of a create request: resolution, DPI and display, checked and bounded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from console.errors import DomainError

TEMPLATE = "desktop"
MIN_WIDTH, MAX_WIDTH = 320, 3840
MIN_HEIGHT, MAX_HEIGHT = 240, 2160
MIN_DPI, MAX_DPI = 48, 480
MAX_DISPLAY = 99
_DISPLAY = re.compile(r"^:(\d{1,2})$")
_KEYS = {"resolution", "dpi", "display"}


@dataclass(frozen=True)
class DesktopConfig:
    width: int = 1920
    height: int = 1080
    dpi: int = 96
    display: int = 1

    @property
    def display_name(self) -> str:
        return f":{self.display}"


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("invalid_request", f"desktop {name} must be an integer")
    if not low <= value <= high:
        raise DomainError("invalid_request", f"desktop {name} must be between {low} and {high}")
    return value


def parse(template: str | None, desktop: Any) -> DesktopConfig | None:
    """The config for a create of `template` (None unless it is the desktop template).

    A `desktop` object on another template is refused, as are keys we do not know."""
    if desktop is None:
        return DesktopConfig() if template == TEMPLATE else None
    if template != TEMPLATE:
        raise DomainError(
            "invalid_request",
            "desktop options are only supported for the desktop template",
            suggested_action="Create with --template desktop.",
        )
    if not isinstance(desktop, dict):
        raise DomainError("invalid_request", "desktop must be an object")
    unknown = sorted(set(desktop) - _KEYS)
    if unknown:
        raise DomainError("invalid_request", f"unknown desktop option(s): {', '.join(unknown)}")
    defaults = DesktopConfig()
    width, height = defaults.width, defaults.height
    resolution = desktop.get("resolution")
    if resolution is not None:
        if not isinstance(resolution, dict) or set(resolution) != {"width", "height"}:
            raise DomainError("invalid_request", "desktop resolution must be {width, height}")
        width = _int(resolution["width"], "width", MIN_WIDTH, MAX_WIDTH)
        height = _int(resolution["height"], "height", MIN_HEIGHT, MAX_HEIGHT)
    dpi = defaults.dpi
    if desktop.get("dpi") is not None:
        dpi = _int(desktop["dpi"], "dpi", MIN_DPI, MAX_DPI)
    display = defaults.display
    if desktop.get("display") is not None:
        match = _DISPLAY.match(str(desktop["display"]))
        if not isinstance(desktop["display"], str) or match is None:
            raise DomainError("invalid_request", "desktop display must look like :1")
        display = _int(int(match[1]), "display number", 0, MAX_DISPLAY)
    return DesktopConfig(width=width, height=height, dpi=dpi, display=display)
