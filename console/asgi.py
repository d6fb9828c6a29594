"""ASGI entry: preview hosts go to the gateway, everything else to the console.

Preview hosts never reach Django's URLconf and console hosts never reach the proxy.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from console.routing import (  # noqa: E402
    api_websocket_urlpatterns,
    console_websocket_urlpatterns,
    unknown_websocket_route,
)
from console.ws_origin import ConsoleOriginValidator  # noqa: E402
from gateway.app import gateway_application  # noqa: E402
from gateway.hosts import is_preview_scope  # noqa: E402

console_websockets = URLRouter(
    [
        *api_websocket_urlpatterns,
        unknown_websocket_route,
    ]
)
console_session_websockets = ConsoleOriginValidator(
    AuthMiddlewareStack(URLRouter([*console_websocket_urlpatterns, unknown_websocket_route]))
)


async def console_websocket(scope, receive, send):
    if scope["path"].startswith("/v1/"):
        return await console_websockets(scope, receive, send)
    return await console_session_websockets(scope, receive, send)


console_application = ProtocolTypeRouter({"http": django_http, "websocket": console_websocket})


async def application(scope, receive, send):
    if scope["type"] in ("http", "websocket") and is_preview_scope(scope, settings.PREVIEW_DOMAIN):
        return await gateway_application(scope, receive, send)
    return await console_application(scope, receive, send)
