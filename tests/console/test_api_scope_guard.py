"""Every /v1 route and every WebSocket channel declares the key scope it needs (the
/v1 counterpart of test_view_auth_guard.py): a new route or frame type without a
declaration fails here, before a read-only key can reach it."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, path

from console.api.auth import PUBLIC, READ, SIGNED_URL, WRITE, api_key_required, methods
from console.api.urls import urlpatterns as api_urlpatterns
from console.api.ws_scopes import ChannelScopes
from console.routing import api_websocket_urlpatterns, console_websocket_urlpatterns

# POST routes that only read (the contract sends their arguments as a JSON body).
_READING_FILE_OPS = ("read", "info", "exists", "find", "search", "download-url")
READING_POSTS = {
    *(f"{owner}/files/{op}" for owner in ("sandboxes/<str:sandbox_id>", "volumes/<str:volume_id>")
      for op in _READING_FILE_OPS),
    "sandboxes/<str:sandbox_id>/ports/<str:port>/readiness",
}  # fmt: skip
# Routes anyone may GET: the unknown-route answer, and the desktop viewer's noVNC files.
PUBLIC_ROUTES = ("^(?P<rest>", "desktop/viewer-assets/")
# Frames a read-only key may send: they follow output or watch, never change anything.
READING_FRAMES = {
    "file_watch",
    "exec_connect",
    "pty_connect",
    "subscribe",
    "monitor_subscribe",
    "monitor_unsubscribe",
}


def _walk(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def undeclared_routes(patterns) -> list[str]:
    """(route, method) pairs whose view does not say what a key needs, or says too little."""
    problems = []
    for route, pattern in _walk(patterns):
        views = getattr(pattern.callback, "api_methods", None) or {"*": pattern.callback}
        for method, view in views.items():
            scope = getattr(view, "api_scope", None)
            if scope not in (READ, WRITE, SIGNED_URL, PUBLIC):
                problems.append(f"{method} {route}: no declared scope")
            elif scope == READ and method in ("POST", "PUT", "PATCH", "DELETE"):
                if route not in READING_POSTS:
                    problems.append(f"{method} {route}: a write method declared read-only")
            elif scope == PUBLIC and not route.startswith(PUBLIC_ROUTES):
                problems.append(f"{method} {route}: public, but not the unknown-route answer")
    return problems


def undeclared_channels(patterns) -> list[str]:
    problems = []
    for route, pattern in _walk(patterns):
        consumer = getattr(pattern.callback, "consumer_class", None)
        channels = getattr(consumer, "channels", None)
        if not channels:
            problems.append(f"{route}: {consumer} declares no channels")
            continue
        for name, declared in channels.items():
            if not isinstance(declared, ChannelScopes):
                problems.append(f"{route} channel={name}: not a ChannelScopes")
                continue
            for frame, scope in declared.messages.items():
                if scope == READ and frame not in READING_FRAMES:
                    problems.append(f"{route} channel={name}: {frame} declared read-only")
    return problems


def test_every_v1_route_declares_its_scope():
    assert len(list(_walk(api_urlpatterns))) >= 50, "the walk found too few /v1 routes"
    assert undeclared_routes(api_urlpatterns) == []


def test_every_websocket_channel_declares_its_scopes():
    sockets = [*api_websocket_urlpatterns, *console_websocket_urlpatterns]
    assert len(sockets) >= 4
    assert undeclared_channels(sockets) == []


def test_the_guard_notices_undeclared_routes_and_channels():
    from channels.generic.websocket import AsyncJsonWebsocketConsumer

    def bare(request):
        raise AssertionError

    write = api_key_required(READ)(bare)
    bad = [
        path("a", bare),
        path("b", methods(POST=write)),
        path("c", methods(GET=api_key_required(READ)(bare))),
    ]
    assert undeclared_routes(bad) == [
        "* a: no declared scope",
        "POST b: a write method declared read-only",
    ]

    class Plain(AsyncJsonWebsocketConsumer):
        pass

    class Loose(AsyncJsonWebsocketConsumer):
        channels = {None: ChannelScopes(READ, {"exec_start": READ})}

    found = undeclared_channels([path("x", Plain.as_asgi()), path("y", Loose.as_asgi())])
    assert len(found) == 2 and "exec_start declared read-only" in found[1]


def test_a_scope_must_be_known():
    with pytest.raises(ValueError):
        ChannelScopes(READ, {"pty_input": "maybe"})
