"""The file watch frames of /v1/sandboxes/{id}/ws without a query string (docs/api.md §2.7).

Client: {"type": "file_watch", "id", "path", "user", "recursive", "timeout_secs"}.
Server: {"type": "file_watch_started", "id"} once the watch runs, then
{"type": "file_event", "id", "event", "name", "path"} per change, or
{"type": "error", "id", "message"}; every frame echoes the request id, as the
client drops frames with another. A socket may hold several watches (distinct
ids); they all stop when it closes, when their timeout passes, or on an error.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from console.runtime.base import RuntimeError_
from console.sandboxes.watch import Change, Watch

MAX_WATCHES_PER_SOCKET = 8
# Changes waiting to be sent; past this a slow client loses the watch, not server memory.
MAX_PENDING = 10_000
# After a watch times out, how long its socket may stay open with no watch (the client
# closes it itself at the same deadline).
IDLE_CLOSE_SECONDS = 10.0

SendJson = Callable[[dict], Awaitable[None]]


class FileWatches:
    """The watches of one connection, keyed by the client's request id."""

    def __init__(
        self,
        sandbox_id: str,
        send_json: SendJson,
        close: Callable[[], Awaitable[None]],
        refusal: str | None = None,
    ) -> None:
        self.sandbox_id = sandbox_id
        self.refusal = refusal  # e.g. the sandbox is not found: the answer to every watch
        self.send_json = send_json
        self.close = close
        self.watches: dict[str, Watch] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.closed = False

    async def start(self, content: dict[str, Any]) -> None:
        watch_id = content.get("id")
        if not isinstance(watch_id, str) or not watch_id:
            await self.send_json(
                {"type": "error", "id": watch_id, "message": "file_watch needs an id"}
            )
            return
        if self.refusal:
            await self._error(watch_id, self.refusal)
            await self.close()
            return
        problem = self._invalid(content, watch_id)
        if problem:
            await self._error(watch_id, problem)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        pending = _Counter()

        def on_change(change: Change | None) -> None:
            # The observer's thread: hand over to the event loop, or give up when flooded.
            if pending.add() > MAX_PENDING:
                change = None if change is None else Change("overflow", "", "")
            try:
                loop.call_soon_threadsafe(queue.put_nowait, change)
            except RuntimeError:  # the loop is closed: the socket is long gone
                pass

        timeout = content.get("timeout_secs")
        try:
            watch = await asyncio.to_thread(
                Watch,
                self.sandbox_id,
                content.get("path"),
                recursive=bool(content.get("recursive")),
                on_change=on_change,
                user=content.get("user") if isinstance(content.get("user"), str) else None,
            )
        except RuntimeError_ as exc:
            await self._error(watch_id, str(exc))
            return
        if self.closed:  # the client left while the watch was starting
            await asyncio.to_thread(watch.stop)
            return
        self.watches[watch_id] = watch
        await self.send_json({"type": "file_watch_started", "id": watch_id})
        self.tasks[watch_id] = asyncio.ensure_future(
            self._pump(watch_id, watch, queue, pending, timeout)
        )

    def _invalid(self, content: dict[str, Any], watch_id: str) -> str | None:
        if watch_id in self.watches:
            return f"a watch with id {watch_id} already runs on this connection"
        if len(self.watches) >= MAX_WATCHES_PER_SOCKET:
            return f"at most {MAX_WATCHES_PER_SOCKET} watches per connection"
        if not isinstance(content.get("path"), str):
            return "file_watch needs a `path` string"
        if not isinstance(content.get("recursive", False), bool):
            return "`recursive` must be true or false"
        timeout = content.get("timeout_secs")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            return "`timeout_secs` must be a positive number or null"
        return None

    async def _pump(
        self,
        watch_id: str,
        watch: Watch,
        queue: asyncio.Queue[Change | None],
        pending: _Counter,
        timeout: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        timed_out = False
        try:
            while deadline is None or loop.time() < deadline:
                left = None if deadline is None else deadline - loop.time()
                try:
                    change = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    timed_out = True
                    break
                pending.done()
                if change is None or change.event == "overflow":
                    why = (
                        f"{watch.path} was removed"
                        if change is None
                        else f"more than {MAX_PENDING} changes were waiting"
                    )
                    await self._error(watch_id, f"{why}; the watch ended")
                    break
                await self.send_json(
                    {
                        "type": "file_event",
                        "id": watch_id,
                        "event": change.event,
                        "name": change.name,
                        "path": change.path,
                    }
                )
        finally:
            await asyncio.to_thread(watch.stop)
            self.watches.pop(watch_id, None)
            self.tasks.pop(watch_id, None)
        if timed_out:
            # The client ends its own loop at the same deadline and closes the socket;
            # closing first would reach it as an error. Close only a socket left idle.
            await asyncio.sleep(IDLE_CLOSE_SECONDS)
            if self.closed:
                return
        if not self.watches:
            await self.close()

    async def _error(self, watch_id: str, message: str) -> None:
        await self.send_json({"type": "error", "id": watch_id, "message": message})

    async def stop_all(self) -> None:
        """The socket closed: end every watch and wait until its observer has stopped."""
        self.closed = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0

    def add(self) -> int:
        with self.lock:
            self.value += 1
            return self.value

    def done(self) -> None:
        with self.lock:
            self.value -= 1
