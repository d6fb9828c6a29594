"""ASGI entry for a gateway-only fleet: the same gateway code as the all-in-one server,
serving preview hosts only (any other Host gets the typed `preview_not_found` 404).

    uvicorn gateway.asgi:application --loop uvloop --http httptools \
        --ws websockets-sansio --no-access-log --workers N

Every process needs the same settings as the console (database, REDIS_URL for the
revocation fan-out, SECRET_KEY for tokens). See README "Preview gateway fleet".
"""

from __future__ import annotations

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django.setup()

from gateway.app import close_gateway, gateway_application  # noqa: E402


async def application(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await gateway_application(scope, receive, send)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Writes the pending usage counters and closes the upstream pools.
            await close_gateway()
            await send({"type": "lifespan.shutdown.complete"})
            return


# What is alive after start-up never needs collecting; freezing it keeps full collections
# short, which shows as lower p99 under load (DESIGN section 8).
gc.collect()
gc.freeze()
