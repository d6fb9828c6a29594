"""ASGI entry for a gateway-only fleet: the same gateway code as the all-in-one server,
serving preview hosts only (any other Host gets the typed `preview_not_found` 404).

    uvicorn gateway.asgi:application --http gateway.httpserver:HttpProtocol \
        --ws websockets-sansio --loop uvloop --no-access-log --no-proxy-headers \
        --timeout-keep-alive 5 --ws-max-size 16777216 --workers N

`--http gateway.httpserver:HttpProtocol` brings the request-head limits (size, count,
read timeout); see docs/gateway.md "Limits". Every process needs the same settings as
the console (database, REDIS_URL for the revocation fan-out, SECRET_KEY for tokens).
"""

from __future__ import annotations

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django.setup()

from gateway.app import gateway_application  # noqa: E402
from gateway.lifespan import with_lifespan  # noqa: E402

application = with_lifespan(gateway_application)

# What is alive after start-up never needs collecting; freezing it keeps full collections
# short, which shows as lower p99 under load (bench/README.md).
gc.collect()
gc.freeze()
