"""Console WebSockets (session-authenticated, behind the Origin check in console/asgi.py).

SandboxExecConsumer backs the exec box of the sandbox page: the browser sends
`{"type": "exec_start", "command": "..."}`, the process starts through the domain
layer (console.sandboxes.start_process, the same call /v1 exec makes) and the
driver's `follow_output` events come back as the contract's exec frames
(`exec_started`, `exec_stdout`, `exec_stderr`, `exec_exit`, `error`).
It must not keep a process alive past the socket: disconnecting kills it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from console import sandboxes
from console.access import project_for_member
from console.api.errors import ApiError
from console.models import Role, Sandbox
from console.runtime import get_driver
from console.runtime.base import RuntimeError_

log = logging.getLogger(__name__)

# The longest a command typed in the console may run before it is killed.
EXEC_STREAM_SECS = 600
# 4403 in the 4000-4999 private range: the page tells "not allowed" from "gone".
CLOSE_REFUSED = 4403


def _sandbox_for(user, team_slug: str, project_slug: str, sandbox_id: str) -> Sandbox | None:
    project = project_for_member(user, team_slug, project_slug, Role.MEMBER)
    if project is None:
        return None
    return Sandbox.objects.filter(project=project, public_id=sandbox_id).first()


class SandboxExecConsumer(AsyncJsonWebsocketConsumer):
    # No channel-layer channel per connection: the stream comes from the driver, not a group.
    channel_layer_alias = None

    async def connect(self) -> None:
        route = self.scope["url_route"]["kwargs"]
        self.sandbox = await database_sync_to_async(_sandbox_for)(self.scope.get("user"), **route)
        self.pid: int | None = None
        self.relay: asyncio.Task | None = None
        if self.sandbox is None:
            # Close before accept: daphne answers 403, and nothing says whether it exists.
            await self.close(code=CLOSE_REFUSED)
            return
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "exec_start":
            await self.start(content)
        elif kind == "exec_kill" and self.pid is not None:
            await self.kill()

    async def start(self, content: dict[str, Any]) -> None:
        if self.relay is not None and not self.relay.done():
            await self.send_json({"type": "error", "message": "A command is still running."})
            return
        body = {"command": content.get("command"), "shell": True, "timeout_secs": EXEC_STREAM_SECS}
        try:
            request = sandboxes.exec_request(body)
            self.pid = await database_sync_to_async(sandboxes.start_process)(self.sandbox, request)
        except ApiError as error:
            await self.send_json({"type": "error", "message": error.message})
            return
        await self.send_json({"type": "exec_started", "pid": self.pid})
        self.relay = asyncio.create_task(self.follow(self.pid))

    async def follow(self, pid: int) -> None:
        """Relay output as it arrives; each blocking `next` runs in a worker thread."""
        events = get_driver().follow_output(
            self.sandbox.runtime_id, pid, stop_after=EXEC_STREAM_SECS
        )
        try:
            while (event := await asyncio.to_thread(next, events, None)) is not None:
                if event.kind == "exit":
                    await self.send_json({"type": "exec_exit", "exit_code": event.exit_code})
                    return
                await self.send_json({"type": f"exec_{event.kind}", "data": event.data})
            # follow_output gave up at stop_after: the command ran too long.
            await self.kill()
            await self.send_json(
                {"type": "error", "message": f"Stopped after {EXEC_STREAM_SECS} s."}
            )
        except RuntimeError_ as exc:
            await self.send_json({"type": "error", "message": str(exc)})

    async def kill(self) -> None:
        if self.pid is None:
            return
        try:
            await asyncio.to_thread(get_driver().kill_process, self.sandbox.runtime_id, self.pid)
        except RuntimeError_:
            pass  # already gone: nothing left to stop

    async def disconnect(self, code: int) -> None:
        if self.relay is not None and not self.relay.done():
            self.relay.cancel()
            await self.kill()
