"""The console's live WebSocket: one per page with live parts (console/live.py).

`.../sandboxes/<id>/live/ws` says when the sandbox's state changed (any lifecycle
event about it); `.../previews/live/ws` and `.../sandboxes/<id>/previews/live/ws`
say when the project's (or that sandbox's) grants changed. The browser gets only
`{"type": "changed", "topic": ...}` and re-fetches the fragment itself, through
the same view (and the same access checks) as any other request.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from console import live
from console.access import project_for_member
from console.api.auth import READ
from console.api.ws_scopes import ChannelScopes
from console.models import Project, Role, Sandbox
from console.sandboxes import lifecycle

# As the exec socket: 4403 tells "not allowed" from a dropped connection, so the page
# does not reconnect.
CLOSE_REFUSED = 4403


def _scope(user: Any, team_slug: str, project_slug: str, sandbox_id: str | None) -> Project | None:
    project = project_for_member(user, team_slug, project_slug, Role.VIEWER)
    if project is None:
        return None
    if sandbox_id and not Sandbox.objects.filter(project=project, public_id=sandbox_id).exists():
        return None
    return project


class LiveConsumer(AsyncJsonWebsocketConsumer):
    topic = ""
    # Declared like every socket (console/api/ws_scopes.py): viewers may open it, and it
    # takes no frames at all.
    channels = {None: ChannelScopes(READ, {})}

    def group(self, project: Project) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        route = self.scope["url_route"]["kwargs"]
        self.sandbox_id: str | None = route.get("sandbox_id")
        self.group_name = ""
        project = await database_sync_to_async(_scope)(
            self.scope.get("user"), route["team_slug"], route["project_slug"], self.sandbox_id
        )
        if project is None:
            await self.close(code=CLOSE_REFUSED)
            return
        live.remember_server_loop()
        self.group_name = self.group(project)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # the page only listens

    async def changed(self) -> None:
        await self.send_json({"type": "changed", "topic": self.topic})


class SandboxLiveConsumer(LiveConsumer):
    topic = "sandbox"

    def group(self, project: Project) -> str:
        return lifecycle.group_name(project)

    async def lifecycle_event(self, message: dict[str, Any]) -> None:
        event = message.get("event") or {}
        about = (
            event.get("sandbox_id"),
            event.get("source_sandbox_id"),
            event.get("target_sandbox_id"),
        )
        if self.sandbox_id in about:
            await self.changed()


class GrantsLiveConsumer(LiveConsumer):
    topic = "grants"

    def group(self, project: Project) -> str:
        return live.grants_group(project.public_id)

    async def grants_changed(self, message: dict[str, Any]) -> None:
        if self.sandbox_id is None or self.sandbox_id in message.get("sandbox_ids", ()):
            await self.changed()
