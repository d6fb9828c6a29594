"""The gateway inside the real server (daphne, `manage.py serve`) in a subprocess: what
only a real server shows - memory under a 100 MiB download, a cut connection when the
upstream dies, SSE timing, and WebSocket close codes through autobahn."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from websockets.asyncio.client import connect

from gateway.upstream import CACHE_SECONDS
from tests.gateway import upstreams
from tests.live import remove_tree, start_live_server

SETUP = """
from console.actor import SYSTEM
from console.models import Project, Sandbox, SandboxStatus
from console.previews import service as previews
sandbox = Sandbox.objects.create(project=Project.objects.get(name="main"), status=SandboxStatus.RUNNING)
_, raw = previews.create_grant(sandbox, 3000, expires_in_seconds=600, actor=SYSTEM)
print(sandbox.public_id, sandbox.host_label, raw["http_port"], raw["websocket_port"])
"""


@pytest.fixture
async def server(tmp_path):
    routes = tmp_path / "routes.json"
    routes.write_text("{}")
    live = await asyncio.to_thread(
        start_live_server, tmp_path, serve_args=("--server", "daphne"),
        PREVIEW_UPSTREAM_RESOLVER="tests.gateway.upstreams.resolve", TEST_PREVIEW_UPSTREAMS=f"@{routes}",
    )  # fmt: skip
    live.routes = routes
    yield live
    await asyncio.to_thread(live.stop)
    remove_tree(live.data_dir)


@pytest.fixture
async def preview(server):
    """(base URL, Host header, http token, websocket token), port 3000 routed to real upstreams."""
    http_runner, http_port = await upstreams.start_http()
    ws_server, ws_port = await upstreams.start_websocket()
    out = await asyncio.to_thread(server.manage, "shell", "-c", SETUP)
    sandbox_id, label, http_token, ws_token = out.split()[-4:]
    server.routes.write_text(json.dumps({f"{sandbox_id}:3000": f"127.0.0.1:{http_port}"}))
    server.ws_routes = json.dumps({f"{sandbox_id}:3000": f"127.0.0.1:{ws_port}"})
    yield f"http://127.0.0.1:{server.port}", f"3000-{label}.preview.localhost", http_token, ws_token
    ws_server.close()
    await http_runner.cleanup()


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def bootstrap(session, base, host, token) -> str:
    async with session.get(
        f"{base}/?edge_token={token}", headers={"Host": host}, allow_redirects=False
    ) as response:
        assert response.status == 303
        return response.headers["Set-Cookie"].split(";")[0]


async def test_through_daphne(server, preview):
    base, host, http_token, ws_token = preview
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    ) as session:
        cookie = await bootstrap(session, base, host, http_token)
        headers = {"Host": host, "Cookie": cookie}

        # 100 MiB through a reader slower than the upstream: the server's peak memory barely moves.
        before = peak_rss_kib(server.process.pid)
        total = 0
        async with session.get(f"{base}/large?mib=100", headers=headers) as response:
            async for chunk in response.content.iter_chunked(1 << 20):
                total += len(chunk)
                if total < 20 << 20:
                    await asyncio.sleep(0.01)
        assert total == 100 << 20
        grown = peak_rss_kib(server.process.pid) - before
        assert grown < 40 * 1024, f"daphne's peak memory grew {grown} KiB"

        # The upstream dies mid-stream: the client sees a broken response at once, not a hang.
        started = time.monotonic()
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(f"{base}/die", headers=headers) as response:
                await response.read()
        assert time.monotonic() - started < 3

        # SSE: the first event arrives before the last is written.
        async with session.get(f"{base}/sse", headers=headers) as response:
            first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 0.35)
            assert first == b"data: event 0\n\n"

    server.routes.write_text(server.ws_routes)
    await asyncio.sleep(CACHE_SECONDS + 0.2)  # the gateway still remembers the HTTP upstream
    uri = f"ws://{host}/close/4321?edge_token={ws_token}"
    async with connect(
        uri, host="127.0.0.1", port=server.port, proxy=None, subprotocols=["chat.v1"]
    ) as socket:
        assert socket.subprotocol == "chat.v1"
        await socket.wait_closed()
    assert socket.close_code == 4321
    async with connect(
        f"ws://{host}/echo?edge_token={ws_token}", host="127.0.0.1", port=server.port, proxy=None
    ) as socket:
        await socket.send(b"\x00bin")
        assert await socket.recv() == b"\x00bin"
