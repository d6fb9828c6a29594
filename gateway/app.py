"""The preview gateway's ASGI application (placeholder until the gateway issue lands)."""

from __future__ import annotations

import json


async def gateway_application(scope, receive, send):
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4404})
        return
    body = json.dumps({"error": "No preview is served here yet", "code": "preview_not_found"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
