"""A second look when the upstream is silent: after STALL_SECONDS without an answer the
route kind re-checks what it cached (a sandbox paused since, say) and may wake it or
answer instead. One timer per request; the check runs only when it fires.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.errors import GatewayError
from gateway.routes import Admission, Route, RouteKind

log = logging.getLogger(__name__)

STALL_SECONDS = 1.0


class StallCheck:
    __slots__ = ("kind", "route", "admission", "error", "_task", "_timer", "_check")

    def __init__(self, kind: RouteKind, route: Route, admission: Admission) -> None:
        self.kind = kind
        self.route = route
        self.admission = admission
        self.error: GatewayError | None = None
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._check: asyncio.Future[None] | None = None

    def __enter__(self) -> StallCheck:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(STALL_SECONDS, self._fire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._check is not None and not self._check.done():
            self._check.cancel()

    def _fire(self) -> None:
        self._check = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await self.kind.stalled(self.route, self.admission)
        except GatewayError as error:
            self.error = error
            if self._task is not None:
                self._task.cancel()
        except Exception:
            log.exception("stall check failed")
