"""What is on the screen: windows (from the window manager's EWMH client list), the active
window, a window's title, the cursor, the display's geometry and the clipboard."""

from __future__ import annotations

import json
import re
from typing import Any

from console.desktop import session as desktop
from console.errors import DomainError
from console.models import DesktopSession, Sandbox

MAX_CLIPBOARD = 1024 * 1024  # read
# Written as one argument of the exec: Linux caps a single argument at 128 KiB.
MAX_CLIPBOARD_SET = 100_000
_WINDOW_ID = re.compile(r"^(?:[0-9]{1,10}|0x[0-9a-fA-F]{1,8})$")

# Runs in the sandbox (python3 is in every image): one exec answers the whole list.
_LIST_SCRIPT = r"""
import json, re, subprocess
def out(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""
def strings(text):
    return [re.sub(r'\\(.)', r'\1', s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', text)]
def prop(lines, name):
    for line in lines.splitlines():
        if line.startswith(name + " =") or line.startswith(name + ":"):
            return line.split("=", 1)[1].strip() if "=" in line else line.split(":", 1)[1].strip()
    return None
root = out("xprop", "-root", "-notype", "_NET_CLIENT_LIST", "_NET_ACTIVE_WINDOW", "_NET_DESKTOP_NAMES")
clients = [int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", prop(root, "_NET_CLIENT_LIST") or "")]
active = re.findall(r"0x[0-9a-fA-F]+", prop(root, "_NET_ACTIVE_WINDOW") or "")
active = int(active[0], 16) if active else None
names = strings(prop(root, "_NET_DESKTOP_NAMES") or "")
windows = []
for wid in clients:
    p = out("xprop", "-id", str(wid), "-notype", "_NET_WM_NAME", "WM_NAME", "WM_CLASS", "_NET_WM_PID", "_NET_WM_DESKTOP")
    title = strings(prop(p, "_NET_WM_NAME") or "") or strings(prop(p, "WM_NAME") or "")
    klass = strings(prop(p, "WM_CLASS") or "")
    pid = prop(p, "_NET_WM_PID")
    desk = prop(p, "_NET_WM_DESKTOP")
    g = out("xwininfo", "-id", str(wid))
    def num(label):
        m = re.search(label + r":\s+(-?\d+)", g)
        return int(m.group(1)) if m else 0
    d = int(desk) if desk and desk.lstrip("-").isdigit() else None
    windows.append({
        "id": str(wid), "title": title[0] if title else "",
        "class_name": klass[-1] if klass else "", "is_active": wid == active,
        "desktop": d if d is not None and d >= 0 else None,
        "desktop_name": names[d] if d is not None and 0 <= d < len(names) else None,
        "pid": int(pid) if pid and pid.isdigit() else None,
        "x": num("Absolute upper-left X"), "y": num("Absolute upper-left Y"),
        "width": num("Width"), "height": num("Height"),
    })
print(json.dumps(windows))
"""


def list_windows(sandbox: Sandbox, session: DesktopSession) -> list[dict[str, Any]]:
    result = desktop.run(session, sandbox, ["python3", "-c", _LIST_SCRIPT])
    try:
        found = json.loads(result.stdout)
    except ValueError:
        raise DomainError("desktop_command_failed", "the window list could not be read") from None
    return found if isinstance(found, list) else []


def window_id(value: str) -> str:
    if not _WINDOW_ID.match(value):
        raise DomainError("invalid_request", "window id must be a number (decimal or 0x hex)")
    return str(int(value, 0))


def current_window(sandbox: Sandbox, session: DesktopSession) -> str:
    result = desktop.run(session, sandbox, ["xdotool", "getactivewindow"], check=False)
    if result.exit_code != 0 or not result.stdout.strip().isdigit():
        raise DomainError("window_not_found", "No window has the focus")
    return result.stdout.strip()


def window_title(sandbox: Sandbox, session: DesktopSession, wid: str) -> str:
    result = desktop.run(
        session, sandbox, ["xdotool", "getwindowname", window_id(wid)], check=False
    )
    if result.exit_code != 0:
        raise DomainError("window_not_found", f"Window {wid} does not exist")
    return result.stdout.rstrip("\n")


def cursor(sandbox: Sandbox, session: DesktopSession) -> dict[str, int]:
    result = desktop.run(session, sandbox, ["xdotool", "getmouselocation", "--shell"])
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {"x": int(values.get("X", 0)), "y": int(values.get("Y", 0))}


def display(session: DesktopSession) -> dict[str, Any]:
    """One screen, one monitor (Xvfb has no outputs); its size in mm follows the DPI."""
    mm = 25.4 / session.dpi
    return {
        "virtual_screen": {"width": session.width, "height": session.height},
        "primary_monitor_id": "0",
        "monitors": [
            {
                "id": "0",
                "name": f"screen{session.display}",
                "x": 0,
                "y": 0,
                "width": session.width,
                "height": session.height,
                "width_mm": round(session.width * mm),
                "height_mm": round(session.height * mm),
                "outputs": [],
                "is_primary": True,
            }
        ],
    }


def clipboard_get(sandbox: Sandbox, session: DesktopSession) -> str:
    result = desktop.run(session, sandbox, ["xclip", "-selection", "clipboard", "-o"], check=False)
    # xclip exits 1 when nothing owns the clipboard: that is an empty clipboard.
    return result.stdout[:MAX_CLIPBOARD] if result.exit_code == 0 else ""


def clipboard_set(sandbox: Sandbox, session: DesktopSession, text: Any) -> str:
    if not isinstance(text, str):
        raise DomainError("invalid_request", "text must be a string")
    if len(text.encode()) > MAX_CLIPBOARD_SET:
        raise DomainError(
            "payload_too_large", f"clipboard text is larger than {MAX_CLIPBOARD_SET} bytes"
        )
    # xclip keeps running in the background to own the selection until the next copy.
    desktop.run(
        session,
        sandbox,
        [
            "sh",
            "-c",
            # PRIMARY too: a middle click pastes what was copied, as on a desktop.
            'printf "%s" "$1" | xclip -selection clipboard -i >/dev/null 2>&1 && '
            'printf "%s" "$1" | xclip -selection primary -i >/dev/null 2>&1',
            "sh",
            text,
        ],
    )
    return text
