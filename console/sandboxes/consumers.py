"""Console WebSockets (session-authenticated, behind console/ws_origin.py's Origin check).

SandboxExecConsumer backs the exec box of the sandbox page: the browser sends
`{"type": "exec_start", "command": "..."}`, the process starts through the domain
layer (console.sandboxes.service.start_process, the same call /v1 exec makes) and the
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

from console.access import project_for_member
from console.api.auth import WRITE
from console.api.ws_scopes import ChannelScopes
from console.errors import DomainError
from console.models import Role, Sandbox
from console.output_stream import OutputStream
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes import service as sandboxes
from console.sandboxes.api.exec_ws import exec_frame

log = logging.getLogger(__name__)

# The longest a command typed in the console may run before it is killed.
EXEC_STREAM_SECS = 600
# 4403 in the 4000-4999 private range: the page tells "not allowed" from "gone".
CLOSE_REFUSED = 4403


def _sandbox_for(user, team_slug: str, project_slug: str, sandbox_id: str) -> Sandbox | None:
    project = project_for_member(user, team_slug, project_slug, Role.MEMBER)
    if project is None:
        return None
    return Sandbox.objects.filter(project=project, public_id=sandbox_id).visible().first()


class SandboxExecConsumer(AsyncJsonWebsocketConsumer):
    # No channel-layer channel per connection: the stream comes from the driver, not a group.
    channel_layer_alias = None
    # Declared like the /v1 sockets (console/api/ws_scopes.py); for a session socket WRITE
    # means the member role, which connect() requires of everyone who opens it.
    channels = {None: ChannelScopes(WRITE, {"exec_start": WRITE, "exec_kill": WRITE})}

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
        except DomainError as error:
            await self.send_json({"type": "error", "message": error.message})
            return
        await self.send_json({"type": "exec_started", "pid": self.pid})
        self.relay = asyncio.create_task(self.follow(self.pid))

    async def follow(self, pid: int) -> None:
        """Relay output as it arrives, through the shared bounded bridge."""
        sandbox_id = self.sandbox.runtime_id
        driver = get_driver()
        stream = OutputStream(
            lambda stop: driver.follow_output(
                sandbox_id, pid, stop_after=EXEC_STREAM_SECS, stop=stop
            ),
            name=f"console-exec-{sandbox_id}-{pid}",
        )
        async with stream:
            try:
                async for event in stream:
                    await self.send_json(exec_frame(event))
                    if event.kind == "exit":
                        return
            except RuntimeError_ as exc:
                await self.send_json({"type": "error", "message": str(exc)})
                return
        # follow_output gave up at stop_after: the command ran too long.
        await self.kill()
        await self.send_json({"type": "error", "message": f"Stopped after {EXEC_STREAM_SECS} s."})

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
