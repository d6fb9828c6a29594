"""The WebSocket leg: connect upstream first, accept with its subprotocol, then splice.

Two pump tasks carry text and binary frames each way; whichever side closes first
decides the close code passed to the other, and both legs always end together. A
revocation of the grant closes the client with 4403 at once.
"""

from __future__ import annotations

import asyncio
import logging

from gateway import accounting, wsclient
from gateway.errors import GatewayError, close_websocket
from gateway.headers import strip_query
from gateway.wsclient import Closed, HandshakeFailed, UpstreamSocket

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
OPEN_TIMEOUT = 10.0
REVOKED_CLOSE_CODE = 4403


def _upstream_code(code: int | None) -> int:
    """A code websockets may send: the client's, or 1000/1001 when it had none to give."""
    if code is None or code in (1005,):
        return 1000
    if code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    return 1001  # 1006: the client vanished without a close frame


async def _close_client(send, code: int | None) -> None:
    code = 1000 if code in (None, 1005) else 1011 if code == 1006 else code
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception:
        # daphne (autobahn) only sends 1000 and 3000-4999 from a server.
        await send({"type": "websocket.close", "code": 1000 if code < 3000 else 4000})


async def proxy_websocket(
    scope,
    receive,
    send,
    *,
    upstream: tuple[str, int],
    host: str,
    headers,
    grant_id: str,
    revoked: asyncio.Event,
) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    target = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    if query:
        query = strip_query(query)
        if query:
            target += b"?" + query
    # Host is the client's (or the sandbox's mask); the socket goes to the real upstream.
    authority = host or f"{upstream[0]}:{upstream[1]}"
    try:
        remote = await wsclient.connect(
            upstream,
            target=target,
            host=authority.encode("latin-1"),
            headers=headers,
            subprotocols=scope.get("subprotocols") or None,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=OPEN_TIMEOUT,
        )
    except (OSError, HandshakeFailed, TimeoutError) as exc:
        code = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_unavailable"
        log.info("upstream websocket %s:%s failed: %s", *upstream, type(exc).__name__)
        accounting.count_error(grant_id, code)
        await close_websocket(send, GatewayError(code))
        return
    await send({"type": "websocket.accept", "subprotocol": remote.subprotocol})
    await _splice(receive, send, remote, grant_id, revoked)


async def _splice(
    receive, send, remote: UpstreamSocket, grant_id: str, revoked: asyncio.Event
) -> None:
    counts = [0, 0]  # bytes in (client->upstream), out

    async def client_to_upstream() -> int | None:
        write = remote.write
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return message.get("code")
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            counts[0] += len(data)
            if write(data):  # the upstream socket is full: wait until it drains
                await remote.drain()

    async def upstream_to_client() -> int | None:
        take = remote.take
        while True:
            data = take()
            if data is None:
                await remote.wait()  # raises Closed once nothing more can come
                continue
            counts[1] += len(data)
            if type(data) is str:
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})

    from_client = asyncio.create_task(client_to_upstream(), name="ws-client-to-upstream")
    from_upstream = asyncio.create_task(upstream_to_client(), name="ws-upstream-to-client")
    revocation = asyncio.create_task(revoked.wait(), name="ws-revocation")
    try:
        done, _ = await asyncio.wait(
            {from_client, from_upstream, revocation}, return_when=asyncio.FIRST_COMPLETED
        )
        if from_client in done and from_client.exception() is None:
            await remote.close(_upstream_code(from_client.result()))
        elif revocation in done:
            await _close_client(send, REVOKED_CLOSE_CODE)
            await remote.close(1001)
        else:
            # The upstream closed (noticed by either pump), or a pump failed: 1011 then.
            failed = from_client if from_client in done else from_upstream
            error = failed.exception()
            clean = error is None or isinstance(error, Closed)
            await _close_client(send, remote.close_code if clean else 1011)
    finally:
        for task in (from_client, from_upstream, revocation):
            task.cancel()
        await asyncio.gather(from_client, from_upstream, revocation, return_exceptions=True)
        await remote.close()
        accounting.count_bytes(grant_id, inbound=counts[0], outbound=counts[1])
