"""Write flow control shared by the upstream HTTP and WebSocket protocols.

asyncio calls pause_writing/resume_writing when the transport's buffer crosses its
high/low marks; writers await `drain()` so a slow upstream holds the client back
instead of growing our memory.
"""

from __future__ import annotations

import asyncio


class WriteFlow(asyncio.Protocol):
    _writable: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._release_writers()

    def _release_writers(self) -> None:
        """Wake anyone waiting to write (on resume, and when the connection is lost)."""
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def drain(self) -> None:
        writable = self._writable
        if writable is not None:
            await writable
