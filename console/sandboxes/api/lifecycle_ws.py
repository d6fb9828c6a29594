"""WebSocket /v1/lifecycle/ws and /v1/sandboxes/{id}/lifecycle/ws (docs/api.md §7.3).

The client sends one `subscribe`; we answer `subscribed` first, then replay matching
events oldest first, then live ones. Live delivery wakes on the project's channel
group and reads the table from the last event sent (so order holds and nothing is
sent twice); a slow poll covers events recorded by another process without a shared
channel layer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async

from console.api.auth import READ
from console.api.errors import ApiError
from console.api.ws_scopes import ChannelScopes, ScopedSocket
from console.errors import DomainError
from console.models import EventStatus, LifecycleEvent, Operation
from console.sandboxes import lifecycle
from console.sandboxes import service as sandboxes

POLL_SECONDS = 2.0
MAX_REPLAY = 1000


class LifecycleSocket(ScopedSocket):
    channels = {None: ChannelScopes(READ, {"subscribe": READ})}

    async def opened(self) -> None:
        self.filters: dict[str, Any] | None = None
        self.last_seq = 0
        self.lock = asyncio.Lock()
        self.poller: asyncio.Task | None = None
        self.scoped_sandbox = None
        sandbox_id = self.scope["url_route"]["kwargs"].get("sandbox_id")
        if sandbox_id:
            try:
                sandbox = await database_sync_to_async(sandboxes.get_sandbox)(
                    self.project, sandbox_id, include_gone=True
                )
            except DomainError as error:
                await self.send_json({"type": "error", "message": error.message})
                await self.close()
                return
            self.scoped_sandbox = sandbox.public_id
        await self.channel_layer.group_add(lifecycle.group_name(self.project), self.channel_name)

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller:
            poller.cancel()
        if hasattr(self, "project"):
            await self.channel_layer.group_discard(
                lifecycle.group_name(self.project), self.channel_name
            )

    async def handle(self, kind: str, content: dict[str, Any]) -> None:
        try:
            filters, replay = self._subscription(content)
        except DomainError as error:
            await self.send_json({"type": "error", "message": error.message})
            return
        async with self.lock:
            self.filters = filters
            await self.send_json(
                {
                    "type": "subscribed",
                    "subscription": {
                        "audience": "customer",
                        "operation": filters.get("operation"),
                        "sandbox_id": filters.get("sandbox_id") or self.scoped_sandbox,
                        "snapshot_id": filters.get("snapshot_id"),
                    },
                }
            )
            events, self.last_seq = await database_sync_to_async(self._replay)(content, replay)
            for event in events:
                await self.send_json({"type": "event", "event": event})
        if self.poller is None:
            self.poller = asyncio.ensure_future(self._poll())

    def _subscription(self, content: dict) -> tuple[dict[str, Any], int]:
        if content.get("audience") not in (None, "customer"):
            raise ApiError("invalid_request", "Only audience=customer can be streamed")
        operation = content.get("operation")
        if operation is not None and operation not in Operation.values:
            raise ApiError("invalid_request", f"Unknown operation {operation!r}")
        status = content.get("status")
        if status is not None and status not in EventStatus.values:
            raise ApiError("invalid_request", f"Unknown status {status!r}")
        filters = {
            "sandbox_id": content.get("sandbox_id"),
            "snapshot_id": content.get("snapshot_id"),
            "operation": operation,
            "status": status,
            "about_sandbox": self.scoped_sandbox,
        }
        replay = content.get("replay_limit", 100)
        if isinstance(replay, bool) or not isinstance(replay, int) or replay < 0:
            replay = 100
        if content.get("live_only"):
            replay = 0
        return {k: v for k, v in filters.items() if v}, min(replay, MAX_REPLAY)

    def _rows(self):
        return lifecycle.events_for(self.project, **(self.filters or {}))

    def _replay(self, content: dict, replay: int) -> tuple[list[dict], int]:
        newest_seq = self._newest_seq()
        after = content.get("after_event_id")
        rows = self._rows()
        if after:
            anchor = LifecycleEvent.objects.filter(project=self.project, id=_uuid(after)).first()
            if anchor is not None:
                found = list(rows.filter(seq__gt=anchor.seq).order_by("seq")[:MAX_REPLAY])
                return [lifecycle.event_to_dict(e) for e in found], max(
                    [newest_seq, *(e.seq for e in found)]
                )
        if replay == 0:
            return [], newest_seq
        found = list(rows.filter(seq__lte=newest_seq).order_by("-seq")[:replay])
        found.reverse()
        return [lifecycle.event_to_dict(e) for e in found], newest_seq

    def _newer(self, after_seq: int) -> tuple[list[LifecycleEvent], int]:
        newest = self._newest_seq()
        found = list(
            self._rows().filter(seq__gt=after_seq, seq__lte=newest).order_by("seq")[:MAX_REPLAY]
        )
        # Move past events the filters dropped too, so the next read stays small.
        return found, newest if len(found) < MAX_REPLAY else found[-1].seq

    async def _send_newer(self) -> None:
        if self.filters is None:
            return
        async with self.lock:
            found, upto = await database_sync_to_async(self._newer)(self.last_seq)
            for event in found:
                await self.send_json({"type": "event", "event": lifecycle.event_to_dict(event)})
            self.last_seq = max(self.last_seq, upto)

    def _newest_seq(self) -> int:
        latest = LifecycleEvent.objects.filter(project=self.project).order_by("-seq").first()
        return latest.seq if latest else 0

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self._send_newer()

    async def lifecycle_event(self, message: dict) -> None:
        """A group message from console.sandboxes.lifecycle.publish: read what is new."""
        await self._send_newer()


def _uuid(value: Any):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
