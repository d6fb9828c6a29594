"""The end of an admission: a revocation (from any process, by the channel-layer fan-out)
or the grant running out cancels the task serving it, whatever it is waiting on (an
SSE stream, a slow download, an upload, a WebSocket splice).
"""

from __future__ import annotations

import asyncio
import time

from gateway import grants


class Cutoff:
    """Cancels the current task when the grant is revoked or expires; use as a context
    manager and check `fired` when a CancelledError arrives."""

    __slots__ = ("grant_id", "expires_at", "fired", "expired", "_task", "_timer", "on_fire")

    def __init__(self, grant_id: str, expires_at: float | None) -> None:
        self.grant_id = grant_id
        self.expires_at = expires_at
        self.fired = False
        self.expired = False  # fired by the clock, not by a revocation
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.on_fire: asyncio.Event | None = None  # set instead of cancelling, when given

    def __enter__(self) -> Cutoff:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self.expires_at is not None:
            self._timer = loop.call_later(max(0.0, self.expires_at - time.time()), self._expire)
        if self.grant_id:
            grants.watch(self.grant_id, self.fire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.grant_id:
            grants.unwatch(self.grant_id, self.fire)

    def _expire(self) -> None:
        if not self.fired:
            self.expired = True
        self.fire()

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        if self.on_fire is not None:
            self.on_fire.set()
        elif self._task is not None:
            self._task.cancel()
