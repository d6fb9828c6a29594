"""Follow a blocking producer of output (a process's log, a terminal) from asyncio.

The one bridge from a driver's `follow_output` (a blocking iterator that polls files)
to an event loop, used by the exec and PTY channels of /v1 and the console terminal.
The producer runs in its own thread and hands items over through a bounded queue: when
the client reads slowly the thread waits (back-pressure reaches the file, which stays
on disk), so at most `max_pending` items of one stream are ever held in memory.
Closing the stream (or leaving `async with`) sets the producer's stop event.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Generic, TypeVar

from django.db import connections

T = TypeVar("T")

# Driver output events are at most 64 KiB of data each: 16 of them is about 1 MiB.
DEFAULT_MAX_PENDING = 16
# How often a producer blocked on a full queue looks at the stop event.
STOP_POLL_SECONDS = 0.2


class _End:
    pass


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()


class OutputStream(Generic[T]):
    """`async for item in stream` yields what `produce(stop)` yields, in order; an
    exception raised by the producer is raised at the reader."""

    def __init__(
        self,
        produce: Callable[[threading.Event], Iterable[T]],
        *,
        name: str,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._produce = produce
        self._name = name
        self._stop = threading.Event()
        self._queue: asyncio.Queue[T | _End | _Failure] = asyncio.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._ended = False

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the producer (soon: it notices between items or while it waits)."""
        self._stop.set()

    async def __aenter__(self) -> OutputStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> OutputStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._ended or self._stop.is_set():  # a closed stream yields nothing more
            raise StopAsyncIteration
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._run, args=(loop,), name=self._name, daemon=True
            )
            self._thread.start()
        item = await self._queue.get()
        if self._stop.is_set():
            raise StopAsyncIteration
        if isinstance(item, _End):
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._ended = True
            raise item.error
        return item

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            for item in self._produce(self._stop):
                if self._stop.is_set() or not self._put(loop, item):
                    return
            self._put(loop, _END)
        except Exception as error:  # handed to the reader, who decides what it means
            self._put(loop, _Failure(error))
        finally:
            # A producer may use the ORM: this thread's connections end with it.
            connections.close_all()
            # A reader waiting on an empty queue after close() must not wait forever.
            try:
                loop.call_soon_threadsafe(self._wake_reader)
            except RuntimeError:
                pass

    def _wake_reader(self) -> None:
        if not self._queue.full():
            self._queue.put_nowait(_END)

    def _put(self, loop: asyncio.AbstractEventLoop, item: T | _End | _Failure) -> bool:
        """Queue one item, waiting while the queue is full; False once stopped."""
        put = self._queue.put(item)
        try:
            future = asyncio.run_coroutine_threadsafe(put, loop)
        except RuntimeError:  # the loop is closed: nobody reads any more
            put.close()  # never scheduled: close it rather than leave it unawaited
            self._stop.set()
            return False
        while True:
            try:
                future.result(timeout=STOP_POLL_SECONDS)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return False
            except concurrent.futures.CancelledError:
                self._stop.set()
                return False
