"""Starting applications on the desktop: an executable, a desktop entry (its Exec line,
read from the sandbox's /usr/share/applications), or a URL/file opened in the browser.
Each runs as a supervised background process of the sandbox (listed, killable)."""

from __future__ import annotations

import configparser
import re
import shlex
from typing import Any
from urllib.parse import urlsplit

from console.desktop import session as desktop
from console.errors import DomainError
from console.models import DesktopSession, Sandbox
from console.runtime import get_driver
from console.sandboxes import service as sandboxes

BROWSER = "firefox-esr"
MAX_ARGS = 64
MAX_ARG_CHARS = 8192
_ENTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENTRY_DIRS = ("/usr/share/applications", "/usr/local/share/applications")
URL_SCHEMES = ("http", "https", "file")


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DomainError("invalid_request", f"{name} must be a list of strings")
    if len(value) > MAX_ARGS or any(len(v) > MAX_ARG_CHARS for v in value):
        raise DomainError("invalid_request", f"{name}: at most {MAX_ARGS} of {MAX_ARG_CHARS} chars")
    return value


def launch(sandbox: Sandbox, session: DesktopSession, body: dict[str, Any]) -> int:
    mode = body.get("mode", "executable")
    if mode == "executable":
        command = body.get("command")
        if not isinstance(command, str) or not command.strip() or len(command) > MAX_ARG_CHARS:
            raise DomainError("invalid_request", "command must be a non-empty string")
        return desktop.background(sandbox, session, [command, *_strings(body.get("args"), "args")])
    if mode == "desktop_entry":
        uri = body.get("uri")
        if uri is not None and not isinstance(uri, str):
            raise DomainError("invalid_request", "uri must be a string")
        return desktop.background(
            sandbox, session, _entry_argv(sandbox, body.get("desktop_entry"), uri)
        )
    raise DomainError("invalid_request", "mode must be executable or desktop_entry")


def _entry_argv(sandbox: Sandbox, name: Any, uri: str | None) -> list[str]:
    if not isinstance(name, str):
        raise DomainError("invalid_request", "desktop_entry must be a string")
    name = name.removesuffix(".desktop")
    if not _ENTRY.match(name):
        raise DomainError("invalid_request", "desktop_entry must be a name such as firefox-esr")
    files = get_driver().files(sandbox.runtime_id)
    text = None
    for folder in ENTRY_DIRS:
        path = f"{folder}/{name}.desktop"
        try:
            with sandboxes.driver_call(lambda p=path: files.open_read(p)) as handle:  # type: ignore[misc]
                text = handle.read(256 * 1024).decode("utf-8", "replace")
            break
        except DomainError:
            continue
    if text is None:
        raise DomainError("desktop_entry_not_found", f"No desktop entry named {name}")
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text)
        exec_line = parser.get("Desktop Entry", "Exec")
    except (configparser.Error, KeyError):
        raise DomainError("invalid_request", f"Desktop entry {name} has no Exec line") from None
    argv: list[str] = []
    for word in shlex.split(exec_line):
        if word in ("%u", "%U", "%f", "%F"):
            argv += [uri] if uri else []
        elif not re.fullmatch(r"%[a-zA-Z]", word):  # other field codes expand to nothing here
            argv.append(word.replace("%%", "%"))
    if not argv:
        raise DomainError("invalid_request", f"Desktop entry {name} has an empty Exec line")
    return argv


def open_target(sandbox: Sandbox, session: DesktopSession, target: Any) -> int:
    """A URL (http, https, file) or an absolute file path, opened in the browser."""
    if not isinstance(target, str) or not target.strip() or len(target) > MAX_ARG_CHARS:
        raise DomainError("invalid_request", "target must be a URL or an absolute path")
    if target.startswith("/"):
        target = "file://" + target
    scheme = urlsplit(target).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise DomainError(
            "invalid_request",
            f"target must be an http(s) or file URL, or an absolute path (got {scheme or 'none'})",
        )
    return desktop.background(sandbox, session, [BROWSER, "--new-window", target])
