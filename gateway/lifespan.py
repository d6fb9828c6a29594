"""ASGI lifespan for servers that send it (uvicorn): at shutdown, write the pending usage
counters and close the upstream pools. Other scopes go to the wrapped app."""

from __future__ import annotations

from gateway.types import App, Receive, Scope, Send


def with_lifespan(app: App) -> App:
    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        await app(scope, receive, send)

    return application


async def _lifespan(receive: Receive, send: Send) -> None:
    from gateway.app import close_gateway

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close_gateway()
            await send({"type": "lifespan.shutdown.complete"})
            return
