"""The HTTP leg: stream the request to the upstream and its answer back, without buffering.

The request body is an async generator over receive() (daphne hands it over whole,
uvicorn in pieces); the response is relayed chunk by chunk as it arrives, so SSE
events pass one by one and a large download never sits in memory. Status and
headers pass through untouched except hop-by-hop ones. Once the response has
started, the only honest move on an upstream failure is to end without completing it.
"""

from __future__ import annotations

import asyncio
import logging

from gateway import accounting, client
from gateway.errors import GatewayError
from gateway.headers import header, response_headers, strip_query
from gateway.pacing import pacer_for

log = logging.getLogger(__name__)


class _ClientGone(Exception):
    pass


async def _request_body(first: dict, receive, counter: list[int]):
    body = first.get("body", b"")
    counter[0] += len(body)
    if body:
        yield body
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        counter[0] += len(chunk)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def proxy_http(
    scope,
    receive,
    send,
    *,
    upstream: tuple[str, int],
    port: int,
    headers,
    grant_id: str,
) -> None:
    first = await receive()
    if first["type"] == "http.disconnect":
        return
    inbound = [0]
    length = None
    if first.get("more_body", False):
        data = _request_body(first, receive, inbound)
        length = header(scope, b"content-length")  # else the upstream leg goes chunked
    else:
        data = first.get("body", b"")
        inbound[0] = len(data)
    target = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    if query:
        query = strip_query(query)
        if query:
            target += b"?" + query
    try:
        response = await client.request(
            scope["method"], upstream, target, headers, data, length=length
        )
    except _ClientGone:
        return
    except client.UpstreamUnavailable:
        log.info("upstream %s:%s refused or closed", *upstream)
        raise GatewayError(
            "upstream_unavailable",
            hint=f"Nothing is listening on port {port} yet; bind 0.0.0.0, not 127.0.0.1.",
        ) from None
    except client.UpstreamTimeout:
        raise GatewayError("upstream_timeout") from None
    await _relay(scope, receive, send, response, grant_id, inbound[0])


async def _relay(
    scope, receive, send, response: client.Connection, grant_id: str, inbound: int
) -> None:
    start = {
        "type": "http.response.start",
        "status": response.status,
        "headers": response_headers(response.headers),
    }
    if response.body_complete:
        # The whole answer is here already: nothing to wait for, so no watcher task.
        body = response.read_buffered()
        response.release()
        await send(start)
        await send({"type": "http.response.body", "body": body})
        accounting.count_bytes(grant_id, inbound, len(body))
        return
    me = asyncio.current_task()
    gone = False

    async def watch_client() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        me.cancel()

    watcher = asyncio.ensure_future(watch_client())
    outbound = 0
    complete = False
    pacer = None
    try:
        await send(start)
        pacer = pacer_for(send)
        while chunk := await response.read():
            outbound += len(chunk)
            if pacer is not None:
                await pacer.wait()  # daphne: the client's socket is full
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if pacer is not None:
            pacer.release()
        await send({"type": "http.response.body", "body": b""})
        complete = True
    except asyncio.CancelledError:
        if not gone:
            raise
        me.uncancel()
    except (client.UpstreamCut, client.UpstreamTimeout) as exc:
        # The upstream died mid-stream: end without completing, so the client sees a cut.
        log.info("upstream stream ended early: %s", type(exc).__name__)
        accounting.count_error(grant_id, "upstream_stream_cut")
        _abort_connection(send)
    finally:
        watcher.cancel()
        if pacer is not None:
            pacer.release()
        if complete:
            response.release()
        else:
            response.close()
        accounting.count_bytes(grant_id, inbound, outbound)


def _abort_connection(send) -> None:
    """Cut the client's connection so it sees a failure, not a short "complete" body.

    uvicorn does this itself when an app returns mid-response; daphne has no ASGI way
    and would leave the client waiting, but its `send` is partial(handle_reply, protocol).
    """
    protocol = (getattr(send, "args", None) or (None,))[0]
    transport = getattr(getattr(protocol, "channel", None), "transport", None)
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
