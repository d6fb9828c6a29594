"""The WebSocket leg: connect upstream first, accept with its subprotocol, then splice.

Two pump tasks carry text and binary frames each way; whichever side closes first
decides the close code passed to the other, and both legs always end together. A
revocation of the grant (or its expiry) closes the client with 4403 at once. Messages
from the upstream wait while the client's socket is full; a client that reads nothing
for HTTP_DRAIN_TIMEOUT_SECONDS is let go.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from gateway import accounting, wsclient
from gateway.cutoff import Cutoff
from gateway.errors import GatewayError, close_websocket
from gateway.headers import strip_query
from gateway.hosts import request_target
from gateway.pacing import websocket_pacer_for
from gateway.routes import Admission, Route, RouteKind, Upstream
from gateway.stall import StallCheck
from gateway.types import Headers, Receive, Scope, Send
from gateway.wsclient import Closed, HandshakeFailed, UpstreamSocket

log = logging.getLogger(__name__)

REVOKED_CLOSE_CODE = 4403


def _upstream_code(code: int | None) -> int:
    """A code websockets may send: the client's, or 1000/1001 when it had none to give."""
    if code is None or code in (1005,):
        return 1000
    if code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    return 1001  # 1006: the client vanished without a close frame


async def _close_client(send: Send, code: int | None) -> None:
    code = 1000 if code in (None, 1005) else 1011 if code == 1006 else code
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception:
        # daphne (autobahn) only sends 1000 and 3000-4999 from a server.
        await send({"type": "websocket.close", "code": 1000 if code < 3000 else 4000})


async def proxy_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    kind: RouteKind,
    route: Route,
    admission: Admission,
    upstream: Upstream,
    headers: Headers,
) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    target = request_target(scope) or b"/"
    query = scope.get("query_string", b"")
    if query:
        query = strip_query(query)
        if query:
            target += b"?" + query
    grant_id = admission.grant_id
    address = upstream.address
    # Host is the client's (or the sandbox's mask); the socket goes to the real upstream.
    authority = upstream.host or f"{address[0]}:{address[1]}"
    error: GatewayError | None = None
    with StallCheck(kind, route, admission) as stall:
        try:
            remote = await wsclient.connect(
                address,
                target=target,
                host=authority.encode("latin-1"),
                headers=headers,
                subprotocols=scope.get("subprotocols") or None,
                max_size=settings.WS_MAX_MESSAGE_BYTES,
                # Below the time a server gives a handshake, so the client hears why.
                open_timeout=float(settings.PREVIEW_WS_OPEN_TIMEOUT_SECONDS),
            )
        except asyncio.CancelledError:
            if stall.error is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            error = stall.error
        except (OSError, HandshakeFailed, TimeoutError) as exc:
            code = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_unavailable"
            log.info("upstream websocket %s:%s failed: %s", *address, type(exc).__name__)
            error = GatewayError(code)
    if error is not None:
        accounting.count_error(grant_id, error.code)
        await close_websocket(send, error)
        return
    await send({"type": "websocket.accept", "subprotocol": remote.subprotocol})
    # Closed by a revocation (fan-out) or when the grant runs out, whichever comes first.
    ended = asyncio.Event()
    cutoff = Cutoff(grant_id, admission.expires_at)
    cutoff.on_fire = ended
    with cutoff:
        await _splice(receive, send, remote, grant_id, ended)


async def _splice(
    receive: Receive, send: Send, remote: UpstreamSocket, grant_id: str, revoked: asyncio.Event
) -> None:
    counts = [0, 0]  # bytes in (client->upstream), out
    drain = float(settings.HTTP_DRAIN_TIMEOUT_SECONDS)
    loop = asyncio.get_running_loop()
    sending_since = [0.0]  # when the send to the client now waiting began (0: none waits)

    async def client_to_upstream() -> int | None:
        write = remote.write
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code: int | None = message.get("code")
                return code
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            counts[0] += len(data)
            if write(data):  # the upstream socket is full: wait until it drains
                async with asyncio.timeout(drain):
                    await remote.drain()

    async def upstream_to_client() -> None:
        take = remote.take
        while True:
            data = take()
            if data is None:
                await remote.wait()  # raises Closed once nothing more can come
                continue
            counts[1] += len(data)
            # The server's send waits while the client's socket is full (uvicorn; under
            # daphne, the pacer): the upstream is not read meanwhile (back-pressure); the
            # watchdog bounds the wait.
            sending_since[0] = loop.time()
            if pacer is not None:
                await pacer.wait()
            if type(data) is str:
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
            sending_since[0] = 0.0

    async def watchdog() -> None:
        while True:
            await asyncio.sleep(drain / 2)
            if sending_since[0] and loop.time() - sending_since[0] > drain:
                return

    pacer = websocket_pacer_for(send)
    from_client = asyncio.create_task(client_to_upstream(), name="ws-client-to-upstream")
    from_upstream = asyncio.create_task(upstream_to_client(), name="ws-upstream-to-client")
    revocation = asyncio.create_task(revoked.wait(), name="ws-revocation")
    stuck = asyncio.create_task(watchdog(), name="ws-drain-watchdog")
    tasks = (from_client, from_upstream, revocation, stuck)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if from_client in done and from_client.exception() is None:
            await remote.close(_upstream_code(from_client.result()))
        elif revocation in done:
            await _close_client(send, REVOKED_CLOSE_CODE)
            await remote.close(1001)
        elif stuck in done:
            # The client stopped reading: give up on it (a close it will likely never read).
            await remote.close(1001)
            from_upstream.cancel()
            async with asyncio.timeout(1):
                await _close_client(send, 1008)
        else:
            # The upstream closed (noticed by either pump), or a pump failed: 1011 then.
            failed = from_client if from_client in done else from_upstream
            error = failed.exception()
            clean = error is None or isinstance(error, Closed)
            await _close_client(send, remote.close_code if clean else 1011)
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pacer is not None:
            pacer.release()
        await remote.close()
        accounting.count_bytes(grant_id, inbound=counts[0], outbound=counts[1])
