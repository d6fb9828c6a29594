"""The preview gateway: route, authenticate, resolve the upstream, proxy, account.

Each step is its own module; this one only composes them and turns a GatewayError
into the typed answer (a page, a JSON envelope, or a close before accept).
"""

from __future__ import annotations

import asyncio

from django.conf import settings

from gateway import accounting, auth, client, grants, upstream
from gateway.errors import GatewayError, close_websocket, send_error
from gateway.headers import upstream_host, upstream_request_headers
from gateway.hosts import parse_route, scope_host
from gateway.http import proxy_http
from gateway.websocket import proxy_websocket


async def gateway_application(scope, receive, send) -> None:
    kind = scope["type"]
    if kind != "http" and kind != "websocket":
        return
    grants.ensure_listener()
    accounting.ensure_flusher()
    websocket = kind == "websocket"
    grant_id = ""
    try:
        route = parse_route(scope_host(scope), settings.PREVIEW_DOMAIN)
        if route is None:
            raise GatewayError("preview_not_found")
        admission = await auth.admit(scope, route, kind)
        grant_id = admission.grant.grant_id
        sandbox = await upstream.sandbox_info(route.sandbox_id)
        auth.check_traffic_token(scope, sandbox)
        if admission.bootstrap:
            accounting.count_use(grant_id, scope=scope)
            await auth.send_bootstrap(scope, send, admission)
            return
        target = await upstream.address(sandbox, route.port)
    except GatewayError as error:
        if grant_id:
            accounting.count_error(grant_id, error.code)
        await (close_websocket(send, error) if websocket else send_error(scope, send, error))
        return

    headers = upstream_request_headers(
        scope, proxied_by_customer=admission.via == "proxy", websocket=websocket
    )
    host = upstream_host(scope, sandbox.mask_request_host, route.port)
    if not websocket:
        accounting.count_use(grant_id, http=True, scope=scope)
        headers.append((b"host", host.encode("latin-1")))
        try:
            await proxy_http(
                scope,
                receive,
                send,
                upstream=target,
                port=route.port,
                headers=headers,
                grant_id=grant_id,
            )
        except GatewayError as error:
            accounting.count_error(grant_id, error.code)
            await send_error(scope, send, error)
        return

    accounting.count_use(grant_id, websocket=True, scope=scope)
    # Closed by a revocation (fan-out) or when the grant runs out, whichever comes first.
    ended = grants.watch_socket(grant_id)
    expiry = asyncio.get_running_loop().call_later(
        admission.grant.remaining_seconds() + 1, ended.set
    )
    try:
        await proxy_websocket(
            scope,
            receive,
            send,
            upstream=target,
            host=host,
            headers=headers,
            grant_id=grant_id,
            revoked=ended,
        )
    finally:
        expiry.cancel()
        grants.unwatch_socket(grant_id, ended)


async def close_gateway() -> None:
    """Stop this loop's background tasks and close the upstream client (servers with a
    lifespan, and tests, call it; daphne has none and simply exits)."""
    await grants.stop_listener()
    await accounting.stop_flusher()
    await client.close()
