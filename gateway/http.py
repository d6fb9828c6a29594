"""The HTTP leg: stream the request to the upstream and its answer back, without buffering.

Nothing of the request body is read before access is decided (the app is called after
the headers; the body is pulled from receive() only here). The request body is an
async generator over receive(), each wait bounded by HTTP_BODY_READ_TIMEOUT_SECONDS;
the response is relayed chunk by chunk as it arrives, so SSE events pass one by one
and a large download never sits in memory. A revocation or the grant's expiry ends
the exchange wherever it is (Cutoff). Once the response has started, the only honest
move on a failure is to cut the connection, so the client sees it was incomplete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from django.conf import settings

from gateway import accounting, client
from gateway.cutoff import Cutoff
from gateway.errors import GatewayError, send_error
from gateway.headers import header, response_headers, strip_query
from gateway.hosts import request_target
from gateway.pacing import pacer_for
from gateway.routes import Admission, Route, RouteKind, Upstream
from gateway.stall import StallCheck
from gateway.types import Headers, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class _ClientGone(Exception):
    pass


class _ClientSlow(Exception):
    """The client sent no body bytes within the body read timeout."""


async def _receive_body(receive: Receive, timeout: float) -> Message:
    try:
        async with asyncio.timeout(timeout):
            return await receive()
    except TimeoutError:
        raise _ClientSlow() from None


async def _request_body(
    first: Message, receive: Receive, counter: list[int], timeout: float
) -> AsyncIterator[bytes]:
    body = first.get("body", b"")
    counter[0] += len(body)
    if body:
        yield body
    while True:
        message = await _receive_body(receive, timeout)
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        counter[0] += len(chunk)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _cut_error(cutoff: Cutoff, via: str) -> GatewayError:
    """What a request cut by a revocation or the expiry is told, in its credential's terms."""
    if via == "proxy":
        return GatewayError(
            "preview_proxy_token_expired" if cutoff.expired else "preview_proxy_token_revoked"
        )
    return GatewayError("edge_token_expired" if cutoff.expired else "preview_grant_revoked")


async def proxy_http(
    scope: Scope,
    receive: Receive,
    send: Send,
    kind: RouteKind,
    route: Route,
    admission: Admission,
    upstream: Upstream,
    headers: Headers,
) -> None:
    grant_id = admission.grant_id
    with Cutoff(grant_id, admission.expires_at) as cutoff:
        try:
            response, inbound = await _exchange(
                scope, receive, kind, route, admission, upstream, headers
            )
        except asyncio.CancelledError:
            if not cutoff.fired:
                raise
            _uncancel()
            error = _cut_error(cutoff, admission.via)
        except GatewayError as exc:
            error = exc
        except _ClientGone:
            return  # nobody to answer
        else:
            try:
                await _relay(scope, receive, send, response, admission, inbound, cutoff)
            except asyncio.CancelledError:
                # Cut while a whole small answer was being handed over.
                if not cutoff.fired:
                    raise
                _uncancel()
                await abort_connection(scope, send)
            return
    accounting.count_error(grant_id, error.code)
    await send_error(scope, send, error)


async def _exchange(
    scope: Scope,
    receive: Receive,
    kind: RouteKind,
    route: Route,
    admission: Admission,
    upstream: Upstream,
    headers: Headers,
) -> tuple[client.Connection, int]:
    body_timeout = float(settings.HTTP_BODY_READ_TIMEOUT_SECONDS)
    try:
        first = await _receive_body(receive, body_timeout)
    except _ClientSlow:
        raise GatewayError("request_body_timeout") from None
    if first["type"] == "http.disconnect":
        raise _ClientGone()
    inbound = [0]
    length = None
    data: bytes | AsyncIterator[bytes]
    if first.get("more_body", False):
        data = _request_body(first, receive, inbound, body_timeout)
        length = header(scope, b"content-length")  # else the upstream leg goes chunked
    else:
        body: bytes = first.get("body", b"")
        data = body
        inbound[0] = len(body)
    target = request_target(scope) or b"/"
    query = scope.get("query_string", b"")
    if query:
        query = strip_query(query)
        if query:
            target += b"?" + query
    address = upstream.address
    with StallCheck(kind, route, admission) as stall:
        try:
            response = await client.request(
                scope["method"], address, target, headers, data, length=length
            )
        except asyncio.CancelledError:
            if stall.error is None:
                raise
            _uncancel()
            raise stall.error from None
        except _ClientSlow:
            raise GatewayError("request_body_timeout") from None
        except client.UpstreamUnavailable:
            log.info("upstream %s:%s refused or closed", *address)
            raise GatewayError(
                "upstream_unavailable",
                hint=f"Nothing is listening on port {route.port} yet; bind 0.0.0.0, not 127.0.0.1.",
            ) from None
        except client.UpstreamInvalid:
            raise GatewayError("upstream_invalid_response") from None
        except client.UpstreamTimeout:
            raise GatewayError("upstream_timeout") from None
    return response, inbound[0]


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _relay(
    scope: Scope,
    receive: Receive,
    send: Send,
    response: client.Connection,
    admission: Admission,
    inbound: int,
    cutoff: Cutoff,
) -> None:
    grant_id = admission.grant_id
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
    assert me is not None
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
    drain = float(settings.HTTP_DRAIN_TIMEOUT_SECONDS)
    try:
        await send(start)
        pacer = pacer_for(send)
        while chunk := await response.read():
            outbound += len(chunk)
            # A client that stops reading holds the upstream back, but not for ever.
            async with asyncio.timeout(drain):
                if pacer is not None:
                    await pacer.wait()  # daphne: the client's socket is full
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if pacer is not None:
            pacer.release()
        await send({"type": "http.response.body", "body": b""})
        complete = True
    except asyncio.CancelledError:
        if not (gone or cutoff.fired):
            raise
        me.uncancel()
        if cutoff.fired:
            # Revoked or expired mid-stream: the client must see the stream end, not wait.
            accounting.count_error(grant_id, _cut_error(cutoff, admission.via).code)
            await abort_connection(scope, send)
    except TimeoutError:
        accounting.count_error(grant_id, "client_too_slow")
        await abort_connection(scope, send)
    except (client.UpstreamCut, client.UpstreamTimeout) as exc:
        # The upstream died mid-stream: end without completing, so the client sees a cut.
        log.info("upstream stream ended early: %s", type(exc).__name__)
        accounting.count_error(grant_id, "upstream_stream_cut")
        await abort_connection(scope, send)
    finally:
        watcher.cancel()
        if pacer is not None:
            pacer.release()
        if complete:
            response.release()
        else:
            response.close()
        accounting.count_bytes(grant_id, inbound, outbound)


ABORT_EXTENSION = "nullspace.abort"  # set by gateway.httpserver (our uvicorn protocol)


async def abort_connection(scope: Scope, send: Send) -> None:
    """Cut the client's connection so it sees a failure, not a short "complete" body.

    Our uvicorn protocol offers an abort in the scope's extensions; daphne has no ASGI
    way, but its `send` is partial(handle_reply, protocol). Other servers close the
    connection themselves when an app returns mid-response.
    """
    abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
    if abort is None:
        protocol = (getattr(send, "args", None) or (None,))[0]
        transport = getattr(getattr(protocol, "channel", None), "transport", None)
        abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
        await asyncio.sleep(0)  # let the server see the connection lost before we return
