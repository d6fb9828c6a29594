"""One load per key at a time: when a cache entry runs out under load, the requests that
miss it together share one database query instead of each running its own.

The load runs in its own task, so a caller that goes away does not cancel it for the
others; its errors reach every waiter and are never kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
Inflight = dict[Any, "asyncio.Future[Any]"]  # key -> the load in progress


async def shared(inflight: Inflight, key: Any, load: Callable[[], Awaitable[T]]) -> T:
    task = inflight.get(key)
    if task is None or task.get_loop() is not asyncio.get_running_loop():
        task = asyncio.ensure_future(load())
        inflight[key] = task
        task.add_done_callback(lambda done: _finished(inflight, key, done))
    result: T = await asyncio.shield(task)
    return result


def _finished(inflight: Inflight, key: Any, task: asyncio.Future[Any]) -> None:
    if inflight.get(key) is task:
        del inflight[key]
    if not task.cancelled():
        task.exception()  # retrieved here, so an error nobody waited for is not logged twice
