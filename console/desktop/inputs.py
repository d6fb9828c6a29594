"""Mouse and keyboard through xdotool (XTEST): the same events a person at the screen makes,
so the application under the pointer or with the focus gets them."""

from __future__ import annotations

import re
from typing import Any

from console.desktop import session as desktop
from console.errors import DomainError
from console.models import DesktopSession, Sandbox

BUTTONS = {"left": "1", "middle": "2", "right": "3"}
SCROLL = {"up": "4", "down": "5", "left": "6", "right": "7"}
MAX_CLICKS = 10
MAX_SCROLL = 100
MAX_TEXT = 10_000
# An X keysym name (Return, a, F5, KP_Enter, ctrl...); refuses anything xdotool would parse
# as an option or a command chain.
_KEY = re.compile(r"^[A-Za-z0-9_]{1,32}$")
MODIFIERS = {"ctrl", "control", "shift", "alt", "super", "meta", "cmd", "win"}
_MODIFIER_KEYSYM = {"cmd": "super", "win": "super", "control": "ctrl"}


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("invalid_request", f"{name} must be an integer")
    return value


def point(session: DesktopSession, body: dict[str, Any], xs: str = "x", ys: str = "y") -> list[str]:
    x, y = _int(body, xs), _int(body, ys)
    if not (0 <= x < session.width and 0 <= y < session.height):
        raise DomainError(
            "invalid_request",
            f"({x}, {y}) is outside the {session.width}x{session.height} screen",
        )
    return [str(x), str(y)]


def button(body: dict[str, Any]) -> str:
    name = body.get("button", "left") or "left"
    if name not in BUTTONS:
        raise DomainError("invalid_request", f"button must be one of {', '.join(BUTTONS)}")
    return BUTTONS[name]


def key_name(value: Any, what: str = "key") -> str:
    if not isinstance(value, str) or not _KEY.match(value):
        raise DomainError("invalid_request", f"{what} must be a key name such as Return, a or F5")
    return _MODIFIER_KEYSYM.get(value.lower(), value)


def combo(keys: Any) -> str:
    """ "ctrl+shift+t" (or a list) as xdotool's key chord, each part checked."""
    parts = keys.split("+") if isinstance(keys, str) else keys
    if not isinstance(parts, list) or not parts or len(parts) > 8:
        raise DomainError("invalid_request", "keys must look like ctrl+c")
    return "+".join(key_name(part.strip() if isinstance(part, str) else part) for part in parts)


def xdotool(sandbox: Sandbox, session: DesktopSession, *args: str) -> None:
    desktop.run(session, sandbox, ["xdotool", *args])


def click(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    clicks = body.get("clicks", 1)
    if isinstance(clicks, bool) or not isinstance(clicks, int) or not 1 <= clicks <= MAX_CLICKS:
        raise DomainError("invalid_request", f"clicks must be an integer from 1 to {MAX_CLICKS}")
    xdotool(
        sandbox,
        session,
        "mousemove",
        *point(session, body),
        "click",
        "--repeat",
        str(clicks),
        "--delay",
        "80",
        button(body),
    )


def move(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    xdotool(sandbox, session, "mousemove", *point(session, body))


def mouse(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any], action: str) -> None:
    """mousedown/mouseup, at (x, y) when both are given."""
    has_x, has_y = body.get("x") is not None, body.get("y") is not None
    if has_x != has_y:
        raise DomainError("invalid_request", "x and y must both be given or both be left out")
    where = ["mousemove", *point(session, body)] if has_x else []
    xdotool(sandbox, session, *where, action, button(body))


def drag(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    start, end, which = (
        point(session, body, "x1", "y1"),
        point(session, body, "x2", "y2"),
        button(body),
    )
    xdotool(
        sandbox,
        session,
        "mousemove",
        *start,
        "mousedown",
        which,
        "sleep",
        "0.1",
        "mousemove",
        *end,
        "sleep",
        "0.1",
        "mouseup",
        which,
    )


def scroll(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    direction = body.get("direction")
    if direction not in SCROLL:
        raise DomainError("invalid_request", f"direction must be one of {', '.join(SCROLL)}")
    amount = body.get("amount", 3)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_SCROLL:
        raise DomainError("invalid_request", f"amount must be an integer from 1 to {MAX_SCROLL}")
    xdotool(
        sandbox,
        session,
        "mousemove",
        *point(session, body),
        "click",
        "--repeat",
        str(amount),
        "--delay",
        "30",
        SCROLL[direction],
    )


def type_text(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    text = body.get("text")
    if not isinstance(text, str):
        raise DomainError("invalid_request", "text must be a string")
    if len(text) > MAX_TEXT:
        raise DomainError("invalid_request", f"text is longer than {MAX_TEXT} characters")
    if text:
        desktop.run(
            session,
            sandbox,
            ["xdotool", "type", "--delay", "8", "--", text],
            timeout=max(desktop.TOOL_TIMEOUT, len(text) * 0.05),
        )


def key(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    xdotool(sandbox, session, "key", "--", key_name(body.get("key")))


def hotkey(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    xdotool(sandbox, session, "key", "--", combo(body.get("keys")))


def press(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> None:
    modifiers = body.get("modifiers") or []
    if not isinstance(modifiers, list) or not all(isinstance(m, str) for m in modifiers):
        raise DomainError("invalid_request", "modifiers must be a list of key names")
    unknown = [m for m in modifiers if m.lower() not in MODIFIERS]
    if unknown:
        raise DomainError(
            "invalid_request",
            f"unknown modifier(s) {', '.join(unknown)}; use {', '.join(sorted(MODIFIERS))}",
        )
    xdotool(sandbox, session, "key", "--", combo([*modifiers, body.get("key")]))
