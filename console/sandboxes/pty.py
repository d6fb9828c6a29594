"""PTY sessions of a sandbox (docs/api.md §2.8): a shell on a pseudo terminal that outlives
the WebSocket that started it, so `pty create` then `pty connect --session-id` work.

The runtime keeps everything (session id, pid, terminal size) with the process, so any
server process can list, resize or end a session. A session lasts while its shell runs.
SessionInfo is {session_id, pid, cols, rows, exec_id}; exec_id is the pid as a string,
the handle of the same process in the /processes API.
"""

from __future__ import annotations

from typing import Any

from console.errors import DomainError
from console.ids import new_public_id
from console.models import Sandbox
from console.runtime import get_driver
from console.runtime.base import PtyInfo, PtyRequest
from console.sandboxes import service as sandboxes

MAX_SIZE = 1000  # columns or rows


def info_dict(info: PtyInfo) -> dict[str, Any]:
    return {
        "session_id": info.session_id,
        "pid": info.pid,
        "cols": info.cols,
        "rows": info.rows,
        "exec_id": str(info.pid),
    }


def size(body: dict[str, Any], default: tuple[int, int] | None = None) -> tuple[int, int]:
    """(cols, rows) from a request body, each 1..MAX_SIZE."""
    found = []
    for name, fallback in zip(("cols", "rows"), default or (None, None), strict=True):
        value = body.get(name, fallback)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            raise DomainError(
                "invalid_request", f"`{name}` must be an integer from 1 to {MAX_SIZE}"
            )
        found.append(value)
    return found[0], found[1]


def start(sandbox: Sandbox, body: dict[str, Any]) -> PtyInfo:
    cols, rows = size(body, (120, 30))
    cwd = body.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise DomainError("invalid_request", "`cwd` must be a string")
    envs = body.get("envs") or {}
    if not isinstance(envs, dict):
        raise DomainError("invalid_request", "`envs` must be an object")
    request = PtyRequest(
        session_id=new_public_id("ses_"),
        cols=cols,
        rows=rows,
        cwd=cwd or None,
        envs={str(k): "" if v is None else str(v) for k, v in envs.items()},
    )
    sandboxes.require_running(sandbox)
    driver = get_driver()
    pid = sandboxes.driver_call(
        lambda: driver.start_pty(
            sandbox.runtime_id, request, default_cwd=sandbox.cwd, envs=dict(sandbox.envs)
        )
    )
    return PtyInfo(request.session_id, pid, cols, rows)


def sessions(sandbox: Sandbox) -> list[PtyInfo]:
    sandboxes.require_running(sandbox)
    return sandboxes.driver_call(lambda: get_driver().ptys(sandbox.runtime_id))


def find(sandbox: Sandbox, *, session_id: Any = None, pid: Any = None) -> PtyInfo:
    """A running session by id or by its shell's pid; anything else is pty_session_not_found."""
    for info in sessions(sandbox):
        if (session_id is not None and info.session_id == session_id) or (
            pid is not None and info.pid == pid
        ):
            return info
    what = f"session {session_id}" if session_id is not None else f"pid {pid}"
    raise DomainError("pty_session_not_found", f"No running PTY {what} in {sandbox.public_id}")


def resize(sandbox: Sandbox, info: PtyInfo, cols: int, rows: int) -> PtyInfo:
    sandboxes.driver_call(lambda: get_driver().resize_pty(sandbox.runtime_id, info.pid, cols, rows))
    return PtyInfo(info.session_id, info.pid, cols, rows)


def kill(sandbox: Sandbox, info: PtyInfo) -> None:
    sandboxes.driver_call(lambda: get_driver().kill_process(sandbox.runtime_id, info.pid))
