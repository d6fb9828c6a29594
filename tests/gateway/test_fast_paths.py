"""The gateway's fast paths keep every check: a cached admission still sees a revocation
and an expiry at once; cache misses under load share one load; the upstream HTTP and
WebSocket clients get HTTP/1.1 and RFC 6455 right on real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from websockets.asyncio.server import serve

from console.actor import SYSTEM
from console.models import PreviewGrant
from console.previews import service as previews
from gateway import auth, client, flight, grants, wsclient
from tests.gateway.conftest import header, http
from tests.gateway.test_auth import within_a_second

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


async def get(sandbox, path, *, headers=()):
    return await http(sandbox, path, headers=headers).get_response(timeout=5)


def code_of(response) -> str:
    return json.loads(response["body"])["code"]


async def test_cached_cookie_admission_refuses_right_after_revocation(routed, grant):
    row, raw = grant
    response = await get(routed, f"/echo?edge_token={raw['http_port']}")
    cookie = header(response, b"set-cookie").split(b";")[0]
    await listening()
    assert (await get(routed, "/echo", headers=[(b"cookie", cookie)]))["status"] == 200
    # Both caches hold it now: the signature is not checked again, the state is not re-read.
    assert any(grant_id == row.public_id for grant_id in auth._verified.values())
    assert grants._cache[row.public_id][1].revoked is False

    await db(previews.revoke_grant)(
        row, actor=SYSTEM
    )  # fans out over the channel layer (Redis: a round trip)
    response = await within_a_second(lambda: get(routed, "/echo", headers=[(b"cookie", cookie)]))
    assert (response["status"], code_of(response)) == (403, "preview_grant_revoked")


async def test_cached_proxy_token_refuses_right_after_revocation(routed, sandbox):
    row, raw = await db(previews.create_grant)(sandbox, 3000, auth_mode="proxy", actor=SYSTEM)
    token = [(b"x-nullspace-preview-proxy-token", raw["http_port"].encode())]
    for _ in range(3):
        assert (await get(routed, "/echo", headers=token))["status"] == 200
    await db(previews.revoke_grant)(row, actor=SYSTEM)
    response = await within_a_second(lambda: get(routed, "/echo", headers=token))
    assert (response["status"], code_of(response)) == (403, "preview_proxy_token_revoked")


async def listening() -> None:
    """Until the gateway hears revocations, it caches nothing (a load that began while it
    was deaf might have missed one); on Redis the subscription takes a round trip or two."""
    deadline = time.monotonic() + 10
    while not grants._subscribed:
        assert time.monotonic() < deadline, "the revocation listener never subscribed"
        await asyncio.sleep(0.01)


async def test_expired_grant_is_refused_even_while_cached(routed, grant):
    row, raw = grant
    soon = timezone.now() + timedelta(seconds=3)
    await db(PreviewGrant.objects.filter(pk=row.pk).update)(expires_at=soon)
    grants._cache.pop(row.public_id, None)
    response = await get(routed, f"/echo?edge_token={raw['http_port']}")
    cookie = header(response, b"set-cookie").split(b";")[0]
    await listening()
    assert (await get(routed, "/echo", headers=[(b"cookie", cookie)]))["status"] == 200
    cached_until = grants._cache[row.public_id][0]

    await asyncio.sleep(max(0.0, (soon - timezone.now()).total_seconds()) + 0.1)
    response = await get(routed, "/echo", headers=[(b"cookie", cookie)])
    assert (response["status"], code_of(response)) == (401, "edge_token_expired")
    # Decided from the cached state: the entry was neither dropped nor re-read.
    assert grants._cache[row.public_id][0] == cached_until > time.monotonic()


async def test_misses_at_once_share_one_load_and_errors_are_not_kept():
    calls = []

    async def load():
        calls.append(1)
        await asyncio.sleep(0.05)
        if len(calls) == 2:
            raise RuntimeError("database down")
        return "state"

    inflight: dict = {}
    results = await asyncio.gather(*(flight.shared(inflight, "k", load) for _ in range(20)))
    assert results == ["state"] * 20 and len(calls) == 1 and not inflight

    outcomes = await asyncio.gather(
        *(flight.shared(inflight, "k", load) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes) and len(calls) == 2
    assert await flight.shared(inflight, "k", load) == "state"  # the error was not kept


async def test_a_caller_leaving_does_not_cancel_the_shared_load():
    async def load():
        await asyncio.sleep(0.05)
        return 42

    inflight: dict = {}
    leaver = asyncio.ensure_future(flight.shared(inflight, "k", load))
    stayer = asyncio.ensure_future(flight.shared(inflight, "k", load))
    await asyncio.sleep(0.01)
    leaver.cancel()
    assert await stayer == 42


# --- the upstream HTTP client against a scripted HTTP/1.1 server ------------------------


class Scripted:
    """An upstream on loopback answering each request with the next scripted bytes (None:
    close the connection without answering). Counts connections and keeps raw requests."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def handle(self, reader, writer) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                body = b""
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        body = await reader.readexactly(int(line.split(b":")[1]))
                if b"transfer-encoding: chunked" in head.lower():
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def body_of(response: client.Connection) -> bytes:
    chunks = []
    while chunk := await response.read():
        chunks.append(chunk)
    response.release()
    return b"".join(chunks)


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_keep_alive_reuses_one_connection_and_frames_bodies():
    upstream = Scripted([OK, OK, OK])
    address = await upstream.start()
    try:
        for method, body in (("GET", b""), ("POST", b"hello"), ("DELETE", b"")):
            response = await client.request(method, address, b"/p?q=1", [(b"x-a", b"1")], body)
            assert (response.status, await body_of(response)) == (200, b"ok")
        assert upstream.connections == 1
        get, post, delete = upstream.requests
        assert get.startswith(b"GET /p?q=1 HTTP/1.1\r\nx-a: 1\r\n")
        assert b"content-length" not in get
        assert b"content-length: 5\r\n" in post and post.endswith(b"\r\n\r\nhello")
        assert b"content-length" not in delete
    finally:
        await client.close()
        await upstream.stop()


async def test_streamed_request_body_goes_chunked_without_a_length():
    upstream = Scripted([OK])
    address = await upstream.start()

    async def pieces():
        for piece in (b"ab", b"", b"cde"):
            yield piece

    try:
        response = await client.request("POST", address, b"/", [], pieces())
        assert await body_of(response) == b"ok"
        sent = upstream.requests[0]
        assert b"transfer-encoding: chunked\r\n" in sent
        assert sent.endswith(b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    finally:
        await client.close()
        await upstream.stop()


async def test_head_204_interim_and_eof_bodies():
    upstream = Scripted(
        [
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",  # HEAD: no body follows
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        ]
    )
    address = await upstream.start()
    try:
        response = await asyncio.wait_for(client.request("HEAD", address, b"/", [], b""), 2)
        assert response.status == 200 and response.body_complete
        assert response.read_buffered() == b""
        response.release()  # never reused: its parser still expects a body
        response = await client.request("GET", address, b"/", [], b"")
        assert (response.status, await body_of(response)) == (204, b"")
        response = await client.request("GET", address, b"/", [], b"")
        assert (response.status, await body_of(response)) == (200, b"until the end")
    finally:
        await client.close()
        await upstream.stop()


async def test_a_reused_connection_closed_under_us_is_retried_once_on_a_new_one():
    upstream = Scripted([OK, None, OK])  # the second request finds its connection dead
    address = await upstream.start()
    try:
        assert await body_of(await client.request("GET", address, b"/", [], b"")) == b"ok"
        assert await body_of(await client.request("GET", address, b"/", [], b"")) == b"ok"
        assert upstream.connections == 2
    finally:
        await client.close()
        await upstream.stop()


async def test_a_post_is_not_retried_and_nothing_listening_is_unavailable():
    upstream = Scripted([OK, None])
    address = await upstream.start()
    try:
        await body_of(await client.request("POST", address, b"/", [], b"x"))
        with pytest.raises(client.UpstreamUnavailable):
            await client.request("POST", address, b"/", [], b"x")
    finally:
        await client.close()
        await upstream.stop()
    with pytest.raises(client.UpstreamUnavailable):
        await client.request("GET", address, b"/", [], b"")


async def test_a_cut_mid_body_is_reported_after_the_bytes_that_came(settings):
    settings.PREVIEW_READ_TIMEOUT_SECONDS = 3.0
    # One answer, then the script ends and the connection closes, 93 bytes short.
    upstream = Scripted([b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"])
    address = await upstream.start()
    try:
        response = await client.request("GET", address, b"/", [], b"")
        assert await response.read() == b"partial"
        with pytest.raises(client.UpstreamCut):
            await response.read()
        response.close()
    finally:
        await client.close()
        await upstream.stop()


# --- the upstream WebSocket client against the websockets server --------------------


async def test_websocket_client_fragments_large_frames_pings_and_close_codes():
    pinged = asyncio.Event()

    async def handler(connection):
        await connection.send(["frag", "mented"])  # one text message in three frames
        await connection.send(b"\x07" * 200_000)  # a 64-bit length
        await connection.send("m" * 300)  # a 16-bit length
        await asyncio.wait_for(connection.ping(), 2)  # answered by our client
        pinged.set()
        echoed = await connection.recv()
        await connection.send(echoed)
        await connection.close(4123, "done")

    server = await serve(handler, "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    try:
        remote = await wsclient.connect(
            ("127.0.0.1", port),
            target=b"/x?y=1",
            host=b"example.test",
            headers=[(b"origin", b"http://example.test")],
            subprotocols=None,
            max_size=1 << 20,
            open_timeout=5,
        )
        assert remote.subprotocol is None
        assert await remote.recv() == "fragmented"
        assert await remote.recv() == b"\x07" * 200_000
        assert await remote.recv() == "m" * 300
        await asyncio.wait_for(pinged.wait(), 2)
        await remote.send(b"back")
        assert await remote.recv() == b"back"
        with pytest.raises(wsclient.Closed):
            await remote.recv()
        assert remote.close_code == 4123
    finally:
        server.close()
        await server.wait_closed()


async def test_websocket_client_refuses_an_oversized_message_and_a_bad_handshake():
    async def handler(connection):
        await connection.send(b"x" * 5000)
        await asyncio.sleep(1)

    server = await serve(handler, "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    options = dict(target=b"/", host=b"h", headers=[], max_size=1000, open_timeout=5)
    try:
        remote = await wsclient.connect(("127.0.0.1", port), subprotocols=None, **options)
        with pytest.raises(wsclient.Closed):
            await remote.recv()
        assert remote.close_code == 1009
    finally:
        server.close()
        await server.wait_closed()
    wrong = Scripted(
        [
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
        ]
    )
    address = await wrong.start()
    try:
        for _ in range(2):  # not a 101, then a 101 with someone else's accept key
            with pytest.raises(wsclient.HandshakeFailed):
                await wsclient.connect(address, subprotocols=None, **options)
    finally:
        await wrong.stop()


async def test_bytes_after_an_answer_retire_the_connection():
    upstream = Scripted([OK + b"HTTP/1.1 999 nobody asked\r\n\r\n", OK])
    address = await upstream.start()
    try:
        for _ in range(2):
            response = await client.request("GET", address, b"/", [], b"")
            assert (response.status, await body_of(response)) == (200, b"ok")
        assert upstream.connections == 2  # the first connection was not reused
    finally:
        await client.close()
        await upstream.stop()


async def test_a_response_head_over_the_cap_is_refused_and_never_held_whole(settings):
    settings.PREVIEW_MAX_RESPONSE_HEADER_BYTES = 8192
    filler = b"x-filler: " + b"f" * 3000 + b"\r\n"
    endless = b"HTTP/1.1 200 OK\r\nx-endless: " + b"e" * 20000  # one header that never ends
    upstream = Scripted(
        [b"HTTP/1.1 200 OK\r\n" + filler * 4 + b"content-length: 0\r\n\r\n", endless]
    )
    address = await upstream.start()
    try:
        for _ in range(2):  # many headers over the cap, then one header over it
            with pytest.raises(client.UpstreamInvalid):
                await client.request("GET", address, b"/", [], b"")
        ok = Scripted([b"HTTP/1.1 200 OK\r\n" + filler * 2 + b"content-length: 2\r\n\r\nok"])
        ok_address = await ok.start()
        assert await body_of(await client.request("GET", ok_address, b"/", [], b"")) == b"ok"
        await ok.stop()
    finally:
        await client.close()
        await upstream.stop()
