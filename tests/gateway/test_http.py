"""The HTTP leg against a real upstream: streaming both ways, header rules, failures."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator

from console.asgi import application
from console.models import PreviewGrant, Sandbox
from gateway import accounting
from tests.gateway import upstreams
from tests.gateway.conftest import PORT, header, host_for, http

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


@pytest.fixture
async def cookie(routed, grant):
    _, raw = grant
    response = await http(routed, f"/?edge_token={raw['http_port']}").get_response()
    return header(response, b"set-cookie").split(b";")[0]


def open_request(
    sandbox, path: str, cookie: bytes, *, method="GET", headers=(), client=("198.51.100.7", 5555)
):
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", host_for(sandbox)), (b"cookie", cookie), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    return ApplicationCommunicator(application, scope)


async def read_all(comm, timeout=10):
    start = await comm.receive_output(timeout)
    chunks = []
    while True:
        message = await comm.receive_output(timeout)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return start, b"".join(chunks)


async def test_upstream_sees_no_secret_and_gets_forwarded_headers(routed, grant, cookie):
    _, raw = grant
    comm = open_request(
        routed,
        "/echo/a%2Fb?x=1&y=2",
        b"theme=dark; " + cookie,
        headers=[
            (b"x-forwarded-for", b"10.9.9.9"),
            (b"referer", f"http://x/p?edge_token={raw['http_port']}&k=v".encode()),
            (b"connection", b"keep-alive, x-hop"),
            (b"x-hop", b"drop me"),
        ],
    )
    await comm.send_input({"type": "http.request", "body": b""})
    start, body = await read_all(comm)
    assert start["status"] == 200
    seen = json.loads(body)
    got = {k.lower(): v for k, v in seen["headers"]}
    assert seen["path"] == "/echo/a%2Fb?x=1&y=2"
    assert got["cookie"] == "theme=dark"
    assert got["x-forwarded-for"] == "198.51.100.7"  # the client's own claim is not trusted
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == host_for(routed).decode()
    assert got["host"] == host_for(routed).decode()
    assert got["referer"] == "http://x/p?k=v"
    assert "x-hop" not in got and "connection" not in got
    assert "edge_token" not in body.decode() and raw["http_port"] not in body.decode()


async def test_status_and_headers_pass_through_untouched(routed, cookie):
    response = await http(routed, "/status/418", headers=[(b"cookie", cookie)]).get_response()
    assert response["status"] == 418
    assert header(response, b"x-upstream") == b"yes"
    assert b"app_session=abc" in header(response, b"set-cookie")
    assert response["body"] == b"teapot says no"


async def test_host_masking_for_dev_servers(routed, cookie):
    await db(Sandbox.objects.filter(pk=routed.pk).update)(
        network={"mask_request_host": "localhost:${PORT}"}
    )
    from gateway import upstream

    upstream._sandboxes.pop(routed.public_id, None)
    response = await http(routed, "/echo", headers=[(b"cookie", cookie)]).get_response()
    got = {k.lower(): v for k, v in json.loads(response["body"])["headers"]}
    assert got["host"] == "localhost:3000"
    assert got["x-forwarded-host"] == host_for(routed).decode()


async def test_sse_arrives_event_by_event(routed, cookie):
    comm = open_request(routed, "/sse", cookie)
    await comm.send_input({"type": "http.request", "body": b""})
    started = time.monotonic()
    start = await comm.receive_output(5)
    assert header(start, b"content-type") == b"text/event-stream"
    arrivals = []
    while len(arrivals) < 3:
        message = await comm.receive_output(5)
        if message.get("body"):
            arrivals.append((time.monotonic() - started, message["body"]))
    assert [body for _, body in arrivals] == [f"data: event {n}\n\n".encode() for n in range(3)]
    assert arrivals[0][0] < 0.3  # the first event did not wait for the others
    assert arrivals[2][0] - arrivals[0][0] > 0.6


async def test_client_leaving_an_event_stream_ends_the_request(routed, cookie):
    comm = open_request(routed, "/sse", cookie)
    await comm.send_input({"type": "http.request", "body": b""})
    assert (await comm.receive_output(5))["status"] == 200
    assert (await comm.receive_output(5))["more_body"] is True
    await comm.send_input({"type": "http.disconnect"})
    await comm.wait(2)  # raises unless the app returns promptly instead of reading the rest


@pytest.mark.parametrize(
    "query", ["mib=100", "mib=8&chunked=1"], ids=["100MiB-content-length", "chunked"]
)
async def test_large_downloads_stream_in_bounded_memory(routed, cookie, query):
    comm = open_request(routed, f"/large?{query}", cookie)
    await comm.send_input({"type": "http.request", "body": b""})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = await comm.receive_output(10)
    assert start["status"] == 200
    total, messages = 0, 0
    while True:
        message = await comm.receive_output(10)
        total += len(message.get("body", b""))
        messages += 1
        if not message.get("more_body"):
            break
    mib = int(query.split("&")[0][4:])
    assert total == mib * upstreams.MIB
    assert messages > 10  # relayed in pieces, not as one buffered body
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 40 * 1024, f"peak memory grew {grown_kib} KiB for a {mib} MiB download"
    if "chunked" in query:
        assert header(start, b"content-length") is None
    else:
        assert header(start, b"content-length") == str(total).encode()


async def test_request_body_streams_in_pieces(routed, cookie):
    comm = open_request(
        routed,
        "/upload",
        cookie,
        method="POST",
        headers=[(b"content-type", b"application/octet-stream")],
    )
    for _ in range(8):
        await comm.send_input({"type": "http.request", "body": b"z" * 100_000, "more_body": True})
        await asyncio.sleep(0.01)
    await comm.send_input({"type": "http.request", "body": b"end", "more_body": False})
    start, body = await read_all(comm)
    assert start["status"] == 200
    assert json.loads(body) == {"received": 800_003}


async def test_slow_client_gets_every_byte(routed, cookie):
    comm = open_request(routed, "/large?mib=4", cookie)
    await comm.send_input({"type": "http.request", "body": b""})
    await comm.receive_output(10)
    total = 0
    while True:
        message = await comm.receive_output(10)
        total += len(message.get("body", b""))
        await asyncio.sleep(0.005)  # a reader slower than the upstream
        if not message.get("more_body"):
            break
    assert total == 4 * upstreams.MIB


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_nothing_listening_is_a_typed_502(routed, cookie):
    upstreams.ROUTES[(routed.public_id, PORT)] = ("127.0.0.1", closed_port())
    response = await http(routed, "/", headers=[(b"cookie", cookie)]).get_response()
    assert response["status"] == 502
    body = json.loads(response["body"])
    assert body["code"] == "upstream_unavailable"
    assert (
        "bind 0.0.0.0" in body["error"]
        and "Errno" not in body["error"]
        and "refused" not in body["error"]
    )
    page = await http(
        routed, "/", headers=[(b"cookie", cookie), (b"sec-fetch-mode", b"navigate")]
    ).get_response()
    assert b"Nothing listening" in page["body"] and b"Errno" not in page["body"]


async def test_upstream_timeout_is_a_504(routed, cookie, settings):
    settings.PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS = 0.3
    response = await http(routed, "/slow?s=3", headers=[(b"cookie", cookie)]).get_response(
        timeout=5
    )
    assert response["status"] == 504
    assert json.loads(response["body"])["code"] == "upstream_timeout"


async def test_upstream_dying_mid_stream_cuts_the_response(routed, cookie):
    comm = open_request(routed, "/die", cookie)
    await comm.send_input({"type": "http.request", "body": b""})
    start = await comm.receive_output(5)
    assert (
        start["status"] == 200
        and header(start, b"content-length") == str(10 * upstreams.MIB).encode()
    )
    received, last = 0, None
    while True:
        try:
            message = await comm.receive_output(2)
        except TimeoutError:
            break  # the app ended without completing the response
        last = message
        received += len(message.get("body", b""))
    await comm.wait(1)
    assert 0 < received < 10 * upstreams.MIB
    assert last is None or last.get("more_body") is True  # never told the client "complete"


async def test_usage_is_counted_in_batches(routed, grant, cookie):
    row, _ = grant
    for _ in range(3):
        await http(
            routed, "/echo", method="POST", body=b"12345", headers=[(b"cookie", cookie)]
        ).get_response()
    upstreams.ROUTES[(routed.public_id, PORT)] = ("127.0.0.1", closed_port())
    from gateway import upstream

    upstream._addresses.clear()
    await http(routed, "/", headers=[(b"cookie", cookie)]).get_response()
    stored = await db(PreviewGrant.objects.get)(pk=row.pk)
    assert stored.http_request_count == 0  # nothing written per request
    await db(accounting.flush)()
    stored = await db(PreviewGrant.objects.get)(pk=row.pk)
    assert stored.http_request_count == 4
    assert stored.use_count == 5  # the bootstrap is a use too
    assert stored.bytes_in_count == 15
    assert stored.bytes_out_count > 100
    assert stored.first_used_at <= stored.last_used_at
    assert stored.last_error_code == "upstream_unavailable" and stored.last_error_at
