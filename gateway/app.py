"""The preview gateway: route, admit, resolve the upstream, proxy, account.

Each step is its own module and each kind of preview name is a route kind
(gateway/routes/); this one only composes them and turns a GatewayError into the
typed answer (a page, a JSON envelope, or a close before accept).
docs/gateway.md has the whole path of a request.
"""

from __future__ import annotations

from django.conf import settings

from gateway import accounting, auth, client, grants, routes
from gateway.errors import GatewayError, close_websocket, send_error
from gateway.headers import upstream_request_headers
from gateway.hosts import canonical, preview_label, request_target, scope_host
from gateway.http import proxy_http
from gateway.routes import Admission, Route, RouteKind
from gateway.types import Receive, Scope, Send
from gateway.websocket import proxy_websocket


def _route(scope: Scope) -> tuple[RouteKind, Route]:
    host = canonical(scope_host(scope))
    label = preview_label(host, settings.PREVIEW_DOMAIN) if host.valid else None
    found = routes.parse(label) if label else None
    if found is None or request_target(scope) is None:
        raise GatewayError("preview_not_found")
    return found


async def gateway_application(scope: Scope, receive: Receive, send: Send) -> None:
    kind_of_scope = scope["type"]
    if kind_of_scope != "http" and kind_of_scope != "websocket":
        return
    grants.ensure_listener()
    accounting.ensure_flusher()
    websocket = kind_of_scope == "websocket"
    grant_id = ""
    try:
        kind, route = _route(scope)
        admission: Admission = await kind.admit(scope, route, kind_of_scope)
        grant_id = admission.grant_id
        if admission.bootstrap:
            accounting.count_use(grant_id)
            await auth.send_bootstrap(scope, send, admission)
            return
        upstream = await kind.upstream(scope, route, admission)
    except GatewayError as error:
        if grant_id:
            accounting.count_error(grant_id, error.code)
        await (close_websocket(send, error) if websocket else send_error(scope, send, error))
        return

    headers = upstream_request_headers(
        scope, proxied_by_customer=admission.via == "proxy", websocket=websocket
    )
    if not websocket:
        accounting.count_use(grant_id, http=True)
        headers.append((b"host", upstream.host.encode("latin-1")))
        await proxy_http(scope, receive, send, kind, route, admission, upstream, headers)
        return
    accounting.count_use(grant_id, websocket=True)
    await proxy_websocket(scope, receive, send, kind, route, admission, upstream, headers)


async def close_gateway() -> None:
    """Stop this loop's background tasks and close the upstream client (servers with a
    lifespan, and tests, call it; daphne has none and simply exits)."""
    await grants.stop_listener()
    await accounting.stop_flusher()
    await client.close()
