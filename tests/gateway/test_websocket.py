"""The WebSocket leg against a real websockets server: auth, subprotocols, frames, close codes,
and a revocation closing a live connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from console.actor import SYSTEM
from console.previews import service as previews
from tests.gateway import upstreams
from tests.gateway.conftest import PORT, header, host_for, http, websocket
from tests.gateway.test_http import closed_port

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


@pytest.fixture
def ws_routed(sandbox, ws_upstream):
    upstreams.ROUTES[(sandbox.public_id, PORT)] = ("127.0.0.1", ws_upstream)
    yield sandbox
    upstreams.ROUTES.pop((sandbox.public_id, PORT), None)


async def test_text_and_binary_frames_with_the_upstreams_subprotocol(ws_routed, grant):
    _, raw = grant
    comm = websocket(
        ws_routed, f"/chat?edge_token={raw['websocket_port']}", subprotocols=["chat.v1", "other"]
    )
    connected, subprotocol = await comm.connect(timeout=5)
    assert connected and subprotocol == "chat.v1"
    await comm.send_to(text_data="hello")
    assert await comm.receive_from(5) == "hello"
    await comm.send_to(bytes_data=b"\x00\x01binary")
    assert await comm.receive_from(5) == b"\x00\x01binary"
    await comm.disconnect()


async def test_upstream_sees_filtered_headers(ws_routed, grant):
    _, raw = grant
    comm = websocket(
        ws_routed,
        f"/headers?edge_token={raw['websocket_port']}&keep=1",
        headers=[(b"origin", b"http://app.example"), (b"x-nullspace-preview-proxy-token", b"nope")],
    )
    # A proxy-token header means "customer proxy": this one is not valid, so refused.
    connected, code = await comm.connect(timeout=5)
    assert not connected and code == 4401

    comm = websocket(
        ws_routed,
        f"/headers?edge_token={raw['websocket_port']}&keep=1",
        headers=[(b"origin", b"http://app.example")],
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    seen = {k.lower(): v for k, v in json.loads(await comm.receive_from(5))}
    assert seen["host"] == host_for(ws_routed).decode()
    assert seen["origin"] == "http://app.example"
    assert seen["x-forwarded-host"] == host_for(ws_routed).decode()
    assert "edge_token" not in json.dumps(seen)
    await comm.disconnect()


async def test_cookie_from_the_page_opens_the_websocket(ws_routed, grant, http_upstream):
    _, raw = grant
    response = await http(ws_routed, f"/?edge_token={raw['http_port']}").get_response()
    cookie = header(response, b"set-cookie").split(b";")[0]
    comm = websocket(ws_routed, "/chat", headers=[(b"cookie", cookie)], subprotocols=["chat.v2"])
    connected, subprotocol = await comm.connect(timeout=5)
    assert connected and subprotocol == "chat.v2"
    await comm.disconnect()


@pytest.mark.parametrize(
    "path, code",
    [
        ("/chat", 4401),  # no credential
        ("/chat?edge_token=nsgw_bad.sig", 4401),  # invalid
        ("/chat?edge_token={http_port}", 4403),  # the HTTP token on a WebSocket
    ],
    ids=["missing", "invalid", "http-token-on-websocket"],
)
async def test_refused_before_accept(ws_routed, grant, path, code):
    _, raw = grant
    comm = websocket(ws_routed, path.format(**raw))
    connected, close_code = await comm.connect(timeout=5)
    assert not connected and close_code == code


async def test_http_only_grant_cookie_does_not_open_websockets(ws_routed):
    _, raw = await db(previews.create_grant)(
        ws_routed, PORT, token_kinds=["http_port"], actor=SYSTEM
    )
    response = await http(ws_routed, f"/?edge_token={raw['http_port']}").get_response()
    cookie = header(response, b"set-cookie").split(b";")[0]
    connected, code = await websocket(ws_routed, "/chat", headers=[(b"cookie", cookie)]).connect(
        timeout=5
    )
    assert not connected and code == 4403


async def test_upstream_close_code_reaches_the_client(ws_routed, grant):
    _, raw = grant
    comm = websocket(
        ws_routed, f"/close/4321?edge_token={raw['websocket_port']}", subprotocols=["chat.v1"]
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    message = await comm.receive_output(5)
    assert message == {"type": "websocket.close", "code": 4321}


async def test_client_close_code_reaches_the_upstream(ws_routed, grant, ws_upstream):
    _, raw = grant
    comm = websocket(
        ws_routed, f"/chat?edge_token={raw['websocket_port']}", subprotocols=["chat.v1"]
    )
    await comm.connect(timeout=5)
    await comm.send_to(text_data="ping")
    assert await comm.receive_from(5) == "ping"
    upstreams.WS_CLOSE_CODES.clear()
    await comm.send_input({"type": "websocket.disconnect", "code": 4002})
    await comm.wait(5)  # both legs closed, the app is done
    for _ in range(50):
        if upstreams.WS_CLOSE_CODES:
            break
        await asyncio.sleep(0.02)
    assert upstreams.WS_CLOSE_CODES == [4002]


async def test_upstream_down_refuses_before_accept(ws_routed, grant):
    _, raw = grant
    upstreams.ROUTES[(ws_routed.public_id, PORT)] = ("127.0.0.1", closed_port())
    connected, code = await websocket(ws_routed, f"/?edge_token={raw['websocket_port']}").connect(
        timeout=5
    )
    assert not connected and code == 4502


async def test_revocation_closes_a_live_websocket(ws_routed, grant):
    row, raw = grant
    comm = websocket(
        ws_routed, f"/chat?edge_token={raw['websocket_port']}", subprotocols=["chat.v1"]
    )
    assert (await comm.connect(timeout=5))[0]
    await comm.send_to(text_data="before")
    assert await comm.receive_from(5) == "before"
    started = asyncio.get_running_loop().time()
    await db(previews.revoke_grant)(row, actor=SYSTEM)
    message = await comm.receive_output(2)
    assert message == {"type": "websocket.close", "code": 4403}
    assert asyncio.get_running_loop().time() - started < 1.0
    await comm.wait(2)
    for _ in range(50):
        if 1001 in upstreams.WS_CLOSE_CODES:
            break
        await asyncio.sleep(0.02)
    assert 1001 in upstreams.WS_CLOSE_CODES  # the upstream leg was closed too
    connected, code = await websocket(
        ws_routed, f"/chat?edge_token={raw['websocket_port']}"
    ).connect(timeout=5)
    assert not connected and code == 4403
