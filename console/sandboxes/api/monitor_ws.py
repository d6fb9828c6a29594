"""WebSocket /v1/monitor/ws: the fleet monitor (`nullspace monitor stream`).

The client sends `monitor_subscribe {id, interval_ms?, include_processes?}`; we answer
`monitor_snapshot` (the project's live sandboxes), then every interval a
`monitor_metrics` (and with include_processes a `monitor_processes`) per running
sandbox, and a `monitor_update` whenever a sandbox appears, changes state or goes
(`removed: true`). A lifecycle event of the project makes the next look at once.
`monitor_unsubscribe {id}` stops one subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async

from console.api.auth import READ
from console.api.ws_scopes import ChannelScopes, ScopedSocket
from console.models import LIVE_STATUSES, Project, Sandbox, SandboxStatus
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes import lifecycle
from console.sandboxes import service as sandboxes

DEFAULT_INTERVAL_MS = 2000
MIN_INTERVAL_MS = 250
MAX_INTERVAL_MS = 60_000
MAX_SUBSCRIPTIONS = 4
MAX_SANDBOXES = 200
MAX_ID = 128


class MonitorSocket(ScopedSocket):
    # Watching the fleet only reads: a read-only key may subscribe.
    channels = {None: ChannelScopes(READ, {"monitor_subscribe": READ, "monitor_unsubscribe": READ})}
    project: Project

    async def opened(self) -> None:
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.changed = asyncio.Event()
        # Public id -> the id the runtime driver knows the sandbox by.
        self.runtime_ids: dict[str, str] = {}
        await self.channel_layer.group_add(lifecycle.group_name(self.project), self.channel_name)

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "subscriptions", {}).values():
            task.cancel()
        if hasattr(self, "project"):
            await self.channel_layer.group_discard(
                lifecycle.group_name(self.project), self.channel_name
            )

    async def lifecycle_event(self, message: dict[str, Any]) -> None:
        self.changed.set()

    async def handle(self, kind: str, content: dict[str, Any]) -> None:
        sub_id = content.get("id")
        if not isinstance(sub_id, str) or not 0 < len(sub_id) <= MAX_ID:
            await self._error("", f"id must be a string of 1 to {MAX_ID} characters")
            return
        if kind == "monitor_unsubscribe":
            task = self.subscriptions.pop(sub_id, None)
            if task is not None:
                task.cancel()
            return
        # ScopedSocket hands on only the two declared types: this one is monitor_subscribe.
        problem = _check_subscribe(content)
        if problem:
            await self._error(sub_id, problem)
            return
        if sub_id not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self._error(sub_id, f"At most {MAX_SUBSCRIPTIONS} subscriptions per connection")
            return
        previous = self.subscriptions.pop(sub_id, None)
        if previous is not None:
            previous.cancel()
        interval = content.get("interval_ms", DEFAULT_INTERVAL_MS) / 1000
        processes = bool(content.get("include_processes", False))
        self.subscriptions[sub_id] = asyncio.ensure_future(self._run(sub_id, interval, processes))

    async def _error(self, sub_id: str, message: str) -> None:
        await self.send_json({"type": "monitor_error", "id": sub_id, "message": message})

    async def _run(self, sub_id: str, interval: float, processes: bool) -> None:
        known = await database_sync_to_async(self._fleet)()
        await self.send_json(
            {"type": "monitor_snapshot", "id": sub_id, "sandboxes": list(known.values())}
        )
        next_sample = 0.0
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now >= next_sample:
                await self._sample(sub_id, known, processes)
                next_sample = loop.time() + interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=next_sample - loop.time())
            self.changed.clear()
            current = await database_sync_to_async(self._fleet)()
            await self._send_updates(sub_id, known, current)
            known = current

    async def _send_updates(
        self, sub_id: str, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
    ) -> None:
        for sandbox_id, info in after.items():
            if before.get(sandbox_id) != info:
                await self.send_json(
                    {
                        "type": "monitor_update",
                        "id": sub_id,
                        "sandbox_id": sandbox_id,
                        "sandbox": info,
                        "removed": False,
                    }
                )
        for sandbox_id in before.keys() - after.keys():
            await self.send_json(
                {
                    "type": "monitor_update",
                    "id": sub_id,
                    "sandbox_id": sandbox_id,
                    "sandbox": None,
                    "removed": True,
                }
            )

    async def _sample(self, sub_id: str, fleet: dict[str, dict[str, Any]], processes: bool) -> None:
        for sandbox_id, info in fleet.items():
            if info["status"] != SandboxStatus.RUNNING:
                continue
            runtime_id = self.runtime_ids.get(sandbox_id, sandbox_id)
            metrics = await asyncio.to_thread(_metrics, runtime_id)
            if metrics is not None:
                await self.send_json(
                    {
                        "type": "monitor_metrics",
                        "id": sub_id,
                        "sandbox_id": sandbox_id,
                        "metrics": metrics,
                    }
                )
            if processes:
                found = await asyncio.to_thread(_processes, runtime_id)
                if found is not None:
                    await self.send_json(
                        {
                            "type": "monitor_processes",
                            "id": sub_id,
                            "sandbox_id": sandbox_id,
                            "processes": found,
                        }
                    )

    def _fleet(self) -> dict[str, dict[str, Any]]:
        rows = list(
            Sandbox.objects.filter(project=self.project, status__in=LIVE_STATUSES)
            .visible()
            .select_related("pause_snapshot")
            .order_by("created_at", "pk")[:MAX_SANDBOXES]
        )
        self.runtime_ids = {row.public_id: row.runtime_id for row in rows}
        return {row.public_id: sandboxes.sandbox_to_dict(row) for row in rows}


def _check_subscribe(content: dict[str, Any]) -> str:
    interval = content.get("interval_ms", DEFAULT_INTERVAL_MS)
    if isinstance(interval, bool) or not isinstance(interval, int):
        return "interval_ms must be an integer"
    if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        return f"interval_ms must be from {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS}"
    if not isinstance(content.get("include_processes", False), bool):
        return "include_processes must be true or false"
    return ""


def _metrics(runtime_id: str) -> dict[str, Any] | None:
    """One SandboxMetrics, or None when the sandbox went meanwhile (its update follows)."""
    try:
        return sandboxes.sample_to_dict(get_driver().metrics(runtime_id))
    except (RuntimeError_, OSError):
        return None


def _processes(runtime_id: str) -> list[dict[str, Any]] | None:
    try:
        return [sandboxes.process_to_dict(p) for p in get_driver().processes(runtime_id)]
    except (RuntimeError_, OSError):
        return None
