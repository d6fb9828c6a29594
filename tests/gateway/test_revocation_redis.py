"""Two real gateway processes (`manage.py serve`) on Redis: a revocation made here is seen by the other
process within a second, for cookie-borne requests and for a live WebSocket.

Needs REDIS_URL and a database the subprocesses can share (PostgreSQL); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from channels.db import database_sync_to_async
from django.db import connection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from console.actor import SYSTEM
from console.previews import service as previews
from tests.gateway.conftest import PORT
from tests.live import ROOT, free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL"),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="the gateway subprocesses need a shared database (PostgreSQL)",
    ),
]
db = database_sync_to_async


def start_gateway(tmp_path, settings, routes: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DATABASE_URL": f"{base}/{connection.settings_dict['NAME']}",  # the test database
        "DATA_DIR": str(tmp_path / f"gw-{port}"),
        "SECRET_KEY": settings.SECRET_KEY,
        "PREVIEW_SIGNING_KEY": settings.PREVIEW_SIGNING_KEY,
        "PREVIEW_DOMAIN": "preview.localhost",
        "PREVIEW_UPSTREAM_RESOLVER": "tests.gateway.upstreams.resolve",
        "TEST_PREVIEW_UPSTREAMS": json.dumps(routes),
        "STATIC_MANIFEST": "0",
    }
    log = open(tmp_path / f"gw-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, port


async def wait_up(port: int) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "gateway process did not start"
            await asyncio.sleep(0.2)


async def test_revocation_reaches_another_gateway_process_within_a_second(
    sandbox, http_upstream, ws_upstream, tmp_path, settings
):
    host = f"{PORT}-{sandbox.host_label}.preview.localhost"
    routes = {f"{sandbox.public_id}:{PORT}": f"127.0.0.1:{http_upstream}"}
    ws_routes = {f"{sandbox.public_id}:{PORT}": f"127.0.0.1:{ws_upstream}"}
    (a, port_a), (b, port_b) = (
        start_gateway(tmp_path, settings, routes),
        start_gateway(tmp_path, settings, ws_routes),
    )
    try:
        await asyncio.gather(wait_up(port_a), wait_up(port_b))
        row, raw = await db(previews.create_grant)(
            sandbox, PORT, expires_in_seconds=600, actor=SYSTEM
        )
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            url_a = f"http://127.0.0.1:{port_a}/echo"
            async with session.get(
                f"{url_a}?edge_token={raw['http_port']}",
                headers={"Host": host},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
                cookie = response.headers["Set-Cookie"].split(";")[0]
            async with session.get(url_a, headers={"Host": host, "Cookie": cookie}) as response:
                assert response.status == 200

            # Process B: a live WebSocket on the same grant (its upstream is the echo server).
            socket = await connect(
                f"ws://{host}/chat", host="127.0.0.1", port=port_b, additional_headers={"Cookie": cookie},
                subprotocols=["chat.v1"], proxy=None,
            )  # fmt: skip
            await socket.send("hi")
            assert await asyncio.wait_for(socket.recv(), 5) == "hi"

            revoked_at = time.monotonic()
            await db(previews.revoke_grant)(row, actor=SYSTEM)
            seen_by_a = None
            while time.monotonic() - revoked_at < 3:
                async with session.get(url_a, headers={"Host": host, "Cookie": cookie}) as response:
                    if response.status == 403:
                        assert (await response.json())["code"] == "preview_grant_revoked"
                        seen_by_a = time.monotonic() - revoked_at
                        break
                await asyncio.sleep(0.02)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 3)
            closed_on_b = time.monotonic() - revoked_at
            assert socket.close_code == 4403
        assert seen_by_a is not None and seen_by_a < 1.0, seen_by_a
        assert closed_on_b < 1.0, closed_on_b
        print(
            f"revocation seen by gateway A after {seen_by_a * 1000:.0f} ms, WebSocket on B closed after {closed_on_b * 1000:.0f} ms"
        )
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(10)
