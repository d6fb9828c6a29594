"""WebSocket /v1/sandboxes/{id}/ws: the exec channel (`?channel=exec`, docs/api.md §2.4).

Frames in: exec_start (run a command and stream it) or exec_connect (attach to a
running pid). Frames out: exec_started first, then exec_stdout / exec_stderr, then
exec_exit; `error` for anything that goes wrong; `exec_truncated` where the output cap
cut the rest. Output comes through console/output_stream.py. What each frame needs of
the key is declared in `channels` (console/api/ws_scopes.py). Without a query string the
socket carries file watches (console/sandboxes/api/file_watch_ws.py, docs/api.md §2.7);
`?channel=pty` a terminal (console/sandboxes/api/pty_ws.py, docs/api.md §2.8).
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from console.api.auth import READ, WRITE
from console.api.errors import ApiError
from console.api.ws_scopes import ChannelScopes, ScopedSocket
from console.errors import DomainError
from console.models import Sandbox, SandboxStatus
from console.output_stream import OutputStream
from console.runtime import get_driver
from console.runtime.base import OutputEvent, RuntimeError_
from console.sandboxes import service as sandboxes
from console.sandboxes.api.file_watch_ws import FileWatches
from console.sandboxes.api.pty_ws import PTY_MESSAGES, PtyChannel


def exec_frame(event: OutputEvent) -> dict[str, Any]:
    """The contract's exec frame for one output event (shared with the console terminal)."""
    if event.kind == "exit":
        frame: dict[str, Any] = {"type": "exec_exit", "exit_code": event.exit_code}
        if event.truncated:
            frame["truncated"] = True
        return frame
    if event.kind == "truncated":
        return {"type": "exec_truncated", "limit_bytes": settings.EXEC_OUTPUT_MAX_BYTES}
    return {"type": f"exec_{event.kind}", "data": event.data}


class SandboxSocket(ScopedSocket):
    channels = {
        None: ChannelScopes(READ, {"file_watch": READ}),
        "exec": ChannelScopes(READ, {"exec_start": WRITE, "exec_connect": READ}),
        "pty": ChannelScopes(READ, PTY_MESSAGES),
    }

    async def opened(self) -> None:
        self.sandbox: Sandbox | None = None
        self.busy = False
        self.stream: OutputStream[OutputEvent] | None = None
        # Held: a task nobody references may be garbage-collected while it runs.
        self.streaming: asyncio.Future[None] | None = None
        self.watches: FileWatches | None = None
        self.pty: PtyChannel | None = None
        sandbox_id = self.scope["url_route"]["kwargs"]["sandbox_id"]
        try:
            self.sandbox = await database_sync_to_async(sandboxes.get_sandbox)(
                self.project, sandbox_id
            )
        except DomainError as error:
            if self.channel is None:  # refused in answer to the watch frame, echoing its id
                self.watches = FileWatches(sandbox_id, self.send_json, self.close, error.message)
            else:
                await self._fail(error.message)
            return
        if self.channel is None:
            destroyed = self.sandbox.status == SandboxStatus.DESTROYED
            refusal = f"Sandbox {sandbox_id} was destroyed" if destroyed else None
            self.watches = FileWatches(self.sandbox.runtime_id, self.send_json, self.close, refusal)
        elif self.channel == "pty":
            self.pty = PtyChannel(self.sandbox, self.send_json, self.close)

    async def disconnect(self, code: int) -> None:
        # Each may be missing: a socket refused at opened() never set them.
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.close()
        watches = getattr(self, "watches", None)
        if watches is not None:
            await watches.stop_all()
        pty = getattr(self, "pty", None)
        if pty is not None:
            pty.detach()

    async def handle(self, kind: str, content: dict[str, Any]) -> None:
        if self.watches is not None:
            await self.watches.start(content)
            return
        if self.pty is not None:
            await self.pty.receive(content)
            return
        sandbox = self.sandbox
        if sandbox is None or self.channel != "exec":
            return
        if self.busy:
            await self.send_json({"type": "error", "message": "one command per connection"})
            return
        self.busy = True
        try:
            if kind == "exec_start":
                pid, timeout = await database_sync_to_async(self._start)(sandbox, content)
            else:
                pid, timeout = await database_sync_to_async(self._attach)(sandbox, content)
        except DomainError as error:
            await self._fail(error.message)
            return
        await self.send_json({"type": "exec_started", "pid": pid})
        self.streaming = asyncio.ensure_future(self._stream(sandbox.runtime_id, pid, timeout))

    def _start(self, sandbox: Sandbox, content: dict) -> tuple[int, float | None]:
        request = sandboxes.exec_request(content, background=True)
        timeout = content.get("timeout_secs")
        pid = sandboxes.start_process(sandbox, request)
        return pid, float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None

    def _attach(self, sandbox: Sandbox, content: dict) -> tuple[int, float | None]:
        pid = content.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ApiError("invalid_request", "exec_connect needs an integer pid")
        sandboxes.require_running(sandbox)
        known = sandboxes.driver_call(lambda: get_driver().processes(sandbox.runtime_id))
        if not any(process.pid == pid for process in known):
            raise ApiError("process_not_found", f"No process {pid} in this sandbox")
        return pid, None

    async def _stream(self, sandbox_id: str, pid: int, timeout: float | None) -> None:
        driver = get_driver()
        self.stream = stream = OutputStream(
            lambda stop: driver.follow_output(sandbox_id, pid, stop_after=timeout, stop=stop),
            name=f"exec-ws-{sandbox_id}-{pid}",
        )
        async with stream:
            try:
                async for event in stream:
                    await self.send_json(exec_frame(event))
                    if event.kind == "exit":
                        await self.close()
                        return
            except RuntimeError_ as exc:
                await self._fail(str(exc))
                return
            if stream.stopped:
                return  # the client left
        # follow_output ended without an exit: the command ran past its timeout.
        await asyncio.to_thread(driver.kill_process, sandbox_id, pid)
        await asyncio.to_thread(driver.wait_process, sandbox_id, pid, 5)
        await self._fail(f"exec_timeout: the command ran past {timeout:g} s and was killed")

    async def _fail(self, message: str) -> None:
        await self.send_json({"type": "error", "message": message})
        await self.close()
