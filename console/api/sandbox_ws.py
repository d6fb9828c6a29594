"""WebSocket /v1/sandboxes/{id}/ws: the exec channel (`?channel=exec`, docs/api.md §2.4).

Frames in: exec_start (run a command and stream it) or exec_connect (attach to a
running pid). Frames out: exec_started first, then exec_stdout / exec_stderr, then
exec_exit; `error` for anything that goes wrong. Output is read from the driver's
follow_output in a thread and handed to the event loop. Without a query string the
socket carries file watches (console/api/file_watch_ws.py, docs/api.md §2.7);
`?channel=pty` a terminal (console/api/pty_ws.py, docs/api.md §2.8).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from channels.db import database_sync_to_async

from console import sandboxes
from console.api.errors import ApiError
from console.api.file_watch_ws import FileWatches
from console.api.pty_ws import PtyChannel
from console.api.ws_auth import query_param, scope_api_key
from console.api.ws_json import TolerantJsonConsumer
from console.models import SandboxStatus
from console.runtime import get_driver
from console.runtime.base import RuntimeError_


class SandboxSocket(TolerantJsonConsumer):
    async def connect(self) -> None:
        key = await scope_api_key(self.scope)
        if key is None:
            await self.close()  # before accept: a 403 on the handshake
            return
        self.project = key.project
        self.channel = query_param(self.scope, "channel")
        self.sandbox = None
        self.busy = False
        self.stop = threading.Event()
        self.watches: FileWatches | None = None
        self.pty: PtyChannel | None = None
        await self.accept()
        sandbox_id = self.scope["url_route"]["kwargs"]["sandbox_id"]
        try:
            self.sandbox = await database_sync_to_async(sandboxes.get_sandbox)(
                self.project, sandbox_id
            )
        except ApiError as error:
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
        elif self.channel != "exec":
            await self._fail(
                f"The channel={self.channel} WebSocket channel is not supported by this server"
            )

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "stop"):
            self.stop.set()
        if getattr(self, "watches", None) is not None:
            await self.watches.stop_all()
        if getattr(self, "pty", None) is not None:
            self.pty.detach()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.watches is not None and isinstance(content, dict):
            if content.get("type") == "file_watch":
                await self.watches.start(content)
            return
        if self.pty is not None and isinstance(content, dict):
            await self.pty.receive(content)
            return
        if self.sandbox is None or self.channel != "exec" or not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind not in ("exec_start", "exec_connect"):
            return  # the contract: unknown types are ignored
        if self.busy:
            await self.send_json({"type": "error", "message": "one command per connection"})
            return
        self.busy = True
        try:
            if kind == "exec_start":
                pid, timeout = await database_sync_to_async(self._start)(content)
            else:
                pid, timeout = await database_sync_to_async(self._attach)(content)
        except ApiError as error:
            await self._fail(error.message)
            return
        await self.send_json({"type": "exec_started", "pid": pid})
        asyncio.ensure_future(self._stream(pid, timeout))

    def _start(self, content: dict) -> tuple[int, float | None]:
        request = sandboxes.exec_request(content, background=True)
        timeout = content.get("timeout_secs")
        pid = sandboxes.start_process(self.sandbox, request)
        return pid, float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None

    def _attach(self, content: dict) -> tuple[int, float | None]:
        pid = content.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ApiError("invalid_request", "exec_connect needs an integer pid")
        sandboxes.require_running(self.sandbox)
        sandboxes._driver(lambda: get_driver().process_logs(self.sandbox.runtime_id, pid))
        return pid, None

    async def _stream(self, pid: int, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        sandbox_id = self.sandbox.runtime_id
        stop = self.stop

        def read() -> None:
            # Runs until the process exits, the timeout passes or the client leaves.
            try:
                for event in get_driver().follow_output(sandbox_id, pid, stop_after=timeout):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                    if stop.is_set():
                        return
            except RuntimeError_ as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read, name=f"exec-ws-{sandbox_id}-{pid}", daemon=True).start()
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, RuntimeError_):
                await self._fail(str(item))
                return
            if item.kind == "exit":
                await self.send_json({"type": "exec_exit", "exit_code": item.exit_code})
                await self.close()
                return
            await self.send_json({"type": f"exec_{item.kind}", "data": item.data})
        if stop.is_set():
            return
        # follow_output ended without an exit: the command ran past its timeout.
        driver = get_driver()
        await asyncio.to_thread(driver.kill_process, sandbox_id, pid)
        await asyncio.to_thread(driver.wait_process, sandbox_id, pid, 5)
        await self._fail(f"exec_timeout: the command ran past {timeout:g} s and was killed")

    async def _fail(self, message: str) -> None:
        await self.send_json({"type": "error", "message": message})
        await self.close()
