"""The PTY frames of /v1/sandboxes/{id}/ws?channel=pty (docs/api.md §2.8).

The first frame is pty_start {id, cols, rows, cwd?, envs?} (a new shell on a pseudo
terminal) or pty_connect {id, session_id | pid} (an existing one). The answer is
pty_started {session_id, pid, cols, rows, exec_id} or error {message, code}, then
pty_output {data} as the terminal prints (a connect first replays its last 64 KiB),
and pty_exited {exit_code} when the shell ends. The client sends pty_input {data |
data_base64}, pty_resize {cols, rows} and pty_kill. Leaving the socket leaves the
shell running: the session is ended by pty_kill, DELETE /pty/{id} or the shell's exit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from console.api.auth import READ, WRITE
from console.api.errors import ApiError
from console.errors import DomainError
from console.models import Sandbox
from console.output_stream import OutputStream
from console.runtime import get_driver
from console.runtime.base import OutputEvent, PtyInfo, RuntimeError_
from console.sandboxes import pty as sandbox_pty

SendJson = Callable[[dict], Awaitable[None]]
# What each frame needs of the key: following a terminal is reading, anything else writes.
PTY_MESSAGES = {
    "pty_start": WRITE,
    "pty_connect": READ,
    "pty_input": WRITE,
    "pty_resize": WRITE,
    "pty_kill": WRITE,
}
# What pty_connect replays of the terminal's earlier output (a screenful or so, not all).
REPLAY_BYTES = 64 * 1024


class PtyChannel:
    """One connection's terminal: at most one session, attached by the first frame."""

    def __init__(
        self, sandbox: Sandbox, send_json: SendJson, close: Callable[[], Awaitable[None]]
    ) -> None:
        self.sandbox = sandbox
        self.send_json = send_json
        self.close = close
        self.info: PtyInfo | None = None
        self.request_id: str | None = None
        self.stream: OutputStream[OutputEvent] | None = None
        # Held: a task nobody references may be garbage-collected while it runs.
        self.streaming: asyncio.Future[None] | None = None
        self.left = False
        self.starting = False

    async def receive(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        try:
            if kind in ("pty_start", "pty_connect"):
                await self._attach(kind, content)
            elif self.info is None:
                return  # nothing attached yet: the contract ignores other frames
            elif kind == "pty_input":
                data = _input_bytes(content)
                await asyncio.to_thread(
                    get_driver().write_stdin, self.sandbox.runtime_id, self.info.pid, data
                )
            elif kind == "pty_resize":
                cols, rows = sandbox_pty.size(content)
                await asyncio.to_thread(sandbox_pty.resize, self.sandbox, self.info, cols, rows)
            elif kind == "pty_kill":
                await asyncio.to_thread(sandbox_pty.kill, self.sandbox, self.info)
        except DomainError as error:
            await self._error(error.message, error.code)
        except RuntimeError_ as exc:
            await self._error(str(exc), exc.code)

    async def _attach(self, kind: str, content: dict[str, Any]) -> None:
        if self.info is not None or self.starting:
            raise ApiError("invalid_request", "this connection already has a PTY session")
        self.starting = True
        self.request_id = content.get("id") if isinstance(content.get("id"), str) else None
        try:
            if kind == "pty_start":
                info = await database_sync_to_async(sandbox_pty.start)(self.sandbox, content)
            else:
                session_id, pid = content.get("session_id"), content.get("pid")
                if session_id is None and (isinstance(pid, bool) or not isinstance(pid, int)):
                    raise ApiError("invalid_request", "pty_connect needs a session_id or a pid")
                info = await database_sync_to_async(sandbox_pty.find)(
                    self.sandbox, session_id=session_id, pid=pid if session_id is None else None
                )
        except (DomainError, RuntimeError_) as exc:
            message, code = (
                (exc.message, exc.code) if isinstance(exc, DomainError) else (str(exc), exc.code)
            )
            await self._error(message, code)
            await self.close()
            return
        self.info = info
        await self._send({"type": "pty_started", **sandbox_pty.info_dict(info)})
        self.streaming = asyncio.ensure_future(
            self._stream(info, REPLAY_BYTES if kind == "pty_connect" else None)
        )

    async def _stream(self, info: PtyInfo, tail_bytes: int | None) -> None:
        sandbox_id = self.sandbox.runtime_id
        driver = get_driver()
        self.stream = stream = OutputStream(
            lambda stop: driver.follow_output(
                sandbox_id, info.pid, stop=stop, tail_bytes=tail_bytes
            ),
            name=f"pty-ws-{sandbox_id}-{info.pid}",
        )
        if self.left:
            stream.close()
        async with stream:
            try:
                async for event in stream:
                    if event.kind == "exit":
                        await self._send({"type": "pty_exited", "exit_code": event.exit_code})
                        break
                    if event.kind == "truncated":
                        await self._send({"type": "pty_truncated"})
                        continue
                    await self._send({"type": "pty_output", "data": event.data})
            except RuntimeError_ as exc:
                await self._error(str(exc), exc.code)
            if not stream.stopped:  # not left by the client: the shell ended or failed
                await self.close()

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.request_id is not None:
            frame["id"] = self.request_id
        if self.info is not None:
            frame.setdefault("session_id", self.info.session_id)
        await self.send_json(frame)

    async def _error(self, message: str, code: str) -> None:
        await self._send({"type": "error", "message": message, "code": code})

    def detach(self) -> None:
        """The socket closed: stop reading; the shell keeps running."""
        self.left = True
        if self.stream is not None:
            self.stream.close()


def _input_bytes(content: dict[str, Any]) -> bytes:
    if content.get("data_base64") is not None:
        try:
            return base64.b64decode(str(content["data_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError("invalid_request", "`data_base64` is not valid base64") from None
    data = content.get("data")
    if not isinstance(data, str):
        raise ApiError("invalid_request", "pty_input needs `data` or `data_base64`")
    return data.encode()
