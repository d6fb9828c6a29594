"""Backpressure for response bodies and WebSocket messages under daphne.

uvicorn's send() waits while the client's socket is full; daphne's returns at once and
buffers without limit, so a fast upstream and a slow client would hold a whole download
in memory. daphne's `send` is partial(handle_reply, request) and the request is a
Twisted consumer: register a push producer and wait while Twisted says "pause".
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.types import Send


class Pacer:
    """A Twisted push producer whose state is an asyncio.Event (set: may write)."""

    def __init__(self, request: Any) -> None:  # a twisted.web Request
        self.request = request
        self.ready = asyncio.Event()
        self.ready.set()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self.ready.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.ready.set()

    def stopProducing(self) -> None:  # noqa: N802 (connection lost: let the writer find out)
        self.ready.set()

    async def wait(self) -> None:
        if not self.ready.is_set():
            await self.ready.wait()

    def release(self) -> None:
        if self.request is not None:
            request, self.request = self.request, None
            if getattr(request, "producer", None) is self:
                request.unregisterProducer()


def pacer_for(send: Send) -> Pacer | None:
    """A Pacer when the server is daphne (after http.response.start), else None."""
    request: Any = (getattr(send, "args", None) or (None,))[0]
    if request is None or getattr(request, "registerProducer", None) is None:
        return None
    if getattr(request, "producer", None):
        return None
    pacer = Pacer(request)
    request.registerProducer(pacer, True)
    return pacer


def websocket_pacer_for(send: Send) -> Pacer | None:
    """The same for a WebSocket under daphne: its send is partial(handle_reply, protocol),
    and the protocol's Twisted transport takes a producer; None elsewhere (uvicorn's send
    waits by itself)."""
    protocol: Any = (getattr(send, "args", None) or (None,))[0]
    transport: Any = getattr(protocol, "transport", None)
    if transport is None or getattr(transport, "registerProducer", None) is None:
        return None
    if getattr(transport, "producer", None):
        return None
    pacer = Pacer(transport)
    transport.registerProducer(pacer, True)
    return pacer
