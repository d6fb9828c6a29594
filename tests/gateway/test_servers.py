"""The hardened gateway on both real entries, fed real bytes: the default server
(`manage.py serve`, uvicorn with our protocol) and the fleet entry (`uvicorn
gateway.asgi:application`). Each test runs on both ("default", "fleet")."""

from __future__ import annotations

import os
import socket
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.gateway.servers import LIMITS, Stack, raw_exchange, start_stack
from tests.live import ROOT

ENTRIES = ["default", "fleet"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("stack"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def grant(stack):
    return stack.grant()


@pytest.fixture(params=ENTRIES)
def entry(request):
    return request.param


def get(stack: Stack, entry: str, host: str, path: str = "/echo", **kwargs) -> httpx.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    return httpx.get(f"http://127.0.0.1:{stack.port(entry)}{path}", headers=headers, **kwargs)


def ws_connect(stack: Stack, entry: str, grant, path: str):
    """A WebSocket to the preview host of `grant` (with its token), through `entry`."""
    sock = socket.create_connection(("127.0.0.1", stack.port(entry)), timeout=10)
    return connect(
        f"ws://{grant.host()}{path}?edge_token={grant.ws_token}",
        sock=sock,
        max_size=None,
        open_timeout=10,
    )


# --- hosts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", ["{host}", "{host}.", "{HOST}", "{host}:8000", "{host}.:8000", "{HOST}.:1"]
)
def test_each_spelling_of_a_preview_host_reaches_the_same_preview(stack, grant, entry, shape):
    cookie = stack.cookie(entry, grant)
    host = shape.format(host=grant.host(), HOST=grant.host().upper())
    response = get(stack, entry, host, headers={"Cookie": cookie})
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/echo"


@pytest.mark.parametrize(
    "host",
    [
        "preview.localhost",
        "preview.localhost.",
        "PREVIEW.localhost:8000",
        "08080-{label}.preview.localhost",
        "03000-{label}.preview.localhost",
        "3000-{label}.preview.localhost:abc",
        "70000-{label}.preview.localhost",
        "x.3000-{label}.preview.localhost",
        "3000-{label}..preview.localhost",
    ],
)
def test_other_names_under_the_preview_domain_get_the_typed_404(stack, grant, entry, host):
    response = get(stack, entry, host.format(label=grant.label))
    assert response.status_code == 404
    assert response.json()["code"] == "preview_not_found"
    assert response.headers["x-nullspace-preview-error"] == "preview_not_found"


def test_an_absolute_form_target_routes_by_its_authority(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    # The Host header names the console; the request line names the preview: the preview wins.
    answer = raw_exchange(
        stack.port(entry),
        f"GET http://{grant.host()}/echo HTTP/1.1\r\nHost: localhost\r\n"
        f"Cookie: {cookie}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"path": "/echo"' in answer


def test_two_host_headers_are_refused(stack, grant, entry):
    answer = raw_exchange(
        stack.port(entry),
        f"GET /echo HTTP/1.1\r\nHost: {grant.host()}\r\nHost: localhost\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400")


def test_the_bootstrap_redirect_stays_on_the_host(stack, grant, entry):
    for path in ("//evil.test/", "/\\evil.test/", "///evil.test/x"):
        response = get(stack, entry, grant.host(), f"{path}?edge_token={grant.http_token}&a=1")
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/") and location[1:2] not in ("/", "\\"), location
        assert location.endswith("evil.test/?a=1") or location.endswith("evil.test/x?a=1")


# --- headers and cookies --------------------------------------------------------------------


def test_upstream_cookies_stay_host_only_and_ours_cannot_be_set(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    response = get(stack, entry, grant.host(), "/toss", headers={"Cookie": cookie})
    assert response.status_code == 200
    cookies = response.headers.get_list("set-cookie")
    assert cookies == ["tossed=1; Path=/", "own=1; Path=/; HttpOnly"]
    assert not [k for k in response.headers if k.lower().startswith("x-nullspace-")]


def test_a_planted_cookie_of_our_name_does_not_shadow_the_real_one(stack, grant, entry):
    real = stack.cookie(entry, grant)
    other = stack.grant()  # another sandbox's valid cookie, planted on this host
    planted = stack.cookie(entry, other)
    for header in (f"__ns_preview=garbage; {planted}; {real}", f"{real}; __ns_preview=garbage"):
        response = get(stack, entry, grant.host(), headers={"Cookie": header})
        assert response.status_code == 200, response.text
        seen = dict(response.json()["headers"]).get("Cookie", "")
        assert "__ns_preview" not in seen


# --- access before the body -----------------------------------------------------------------


def test_an_unauthenticated_upload_is_refused_right_after_its_headers(stack, grant, entry):
    with socket.create_connection(("127.0.0.1", stack.port(entry)), timeout=5) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {grant.host()}\r\n"
            f"Content-Length: {100 << 20}\r\n\r\n".encode()
        )
        sock.sendall(b"u" * 65536)  # the body starts; no credential anywhere
        started = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"edge_token_missing" in answer
        assert time.monotonic() - started < 1
        # The server does not read the rest of the upload: it closes soon after answering.
        sent = 0
        with pytest.raises(OSError):
            for _ in range(2000):
                sock.sendall(b"u" * 65536)
                sent += 65536
        assert sent < 50 << 20


# --- limits ---------------------------------------------------------------------------------


def test_a_request_head_too_large_is_a_431(stack, grant, entry):
    big = "x" * 20000
    answer = raw_exchange(
        stack.port(entry),
        f"GET / HTTP/1.1\r\nHost: {grant.host()}\r\nX-Big: {big}\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 431")
    many = "".join(f"X-H{n}: 1\r\n" for n in range(60))
    answer = raw_exchange(
        stack.port(entry), f"GET / HTTP/1.1\r\nHost: {grant.host()}\r\n{many}\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_slowloris_head_is_cut_after_the_header_timeout(stack, grant, entry):
    with socket.create_connection(("127.0.0.1", stack.port(entry)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        answer = b""
        for _ in range(10):  # a byte every 0.3 s: never a whole head
            try:
                sock.sendall(b"X")
            except OSError:
                break
            time.sleep(0.3)
        sock.settimeout(3)
        try:
            answer = sock.recv(1024)
        except OSError:
            pass
        assert answer.startswith(b"HTTP/1.1 408") or answer == b""
        assert time.monotonic() - started < 4


def test_an_idle_keep_alive_connection_is_closed(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    with socket.create_connection(("127.0.0.1", stack.port(entry)), timeout=5) as sock:
        sock.sendall(
            f"GET /echo HTTP/1.1\r\nHost: {grant.host()}\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        while sock.recv(65536):
            pass
        assert time.monotonic() - started < 3  # HTTP_KEEPALIVE_SECONDS=1


def test_a_stalled_request_body_is_a_408(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    answer = raw_exchange(
        stack.port(entry),
        f"POST /upload HTTP/1.1\r\nHost: {grant.host()}\r\nCookie: {cookie}\r\n"
        f"Content-Length: 1000\r\n\r\nonly-part".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_body_timeout" in answer


def test_an_upstream_that_never_answers_is_a_504_after_the_first_byte_timeout(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    started = time.monotonic()
    response = get(stack, entry, grant.host(), "/slow?s=10", headers={"Cookie": cookie}, timeout=10)
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert time.monotonic() - started < 4  # PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS=2


def test_an_upstream_that_never_accepts_is_a_504_after_the_connect_timeout(stack, entry):
    # A listener with a full accept queue: the kernel drops further SYNs, connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    other = stack.grant()
    stack.route(other.sandbox_id, 3000, port)
    try:
        cookie = stack.cookie(entry, other)
        started = time.monotonic()
        response = get(stack, entry, other.host(), headers={"Cookie": cookie}, timeout=10)
        assert response.status_code in (502, 504)
        assert response.json()["code"] in ("upstream_timeout", "upstream_unavailable")
        assert time.monotonic() - started < 4  # PREVIEW_CONNECT_TIMEOUT_SECONDS=1 (+ stall)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_an_upstream_response_head_too_large_is_a_502(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    response = get(stack, entry, grant.host(), "/big-head?n=40", headers={"Cookie": cookie})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_invalid_response"
    response = get(stack, entry, grant.host(), "/big-head?n=3", headers={"Cookie": cookie})
    assert response.status_code == 200


def test_a_client_that_stops_reading_is_let_go_after_the_drain_timeout(stack, grant, entry):
    cookie = stack.cookie(entry, grant)
    with socket.create_connection(("127.0.0.1", stack.port(entry)), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            f"GET /large?mib=200 HTTP/1.1\r\nHost: {grant.host()}\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        time.sleep(4)  # HTTP_DRAIN_TIMEOUT_SECONDS=2: the server gives up on us meanwhile
        # What the kernels buffered still arrives, then the cut: within seconds, not the
        # minutes a 200 MiB body would take through this tiny receive buffer.
        received, cut, deadline = 0, False, time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    cut = True
                    break
                received += len(chunk)
        except OSError:
            cut = True
        assert cut, f"still streaming after {received} bytes"


def test_a_websocket_upstream_that_never_answers_the_handshake_is_refused_in_time(stack, entry):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    other = stack.grant()
    stack.route(other.sandbox_id, 3000, listener.getsockname()[1])
    try:
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(stack, entry, other, "/")
        assert refused.value.response.status_code in (403, 500)
        assert time.monotonic() - started < 3  # PREVIEW_WS_OPEN_TIMEOUT_SECONDS=1 (+ stall)
    finally:
        listener.close()
        for sock, _ in held:
            sock.close()


def test_a_websocket_client_that_reads_nothing_holds_the_upstream_back(stack, entry):
    other = stack.grant()
    stack.route(other.sandbox_id, 3000, stack.upstreams.ws_port)
    pid = stack.live.process.pid if entry == "default" else stack.fleet.pid
    before = rss_kib(pid)
    ws = ws_connect(stack, entry, other, "/flood")
    try:
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        time.sleep(1.5)  # the upstream sends 32 KiB messages as fast as it may
        grown = rss_kib(pid) - before
        assert grown < 32 * 1024, f"the server grew {grown} KiB holding a flood"
        time.sleep(2.5)  # HTTP_DRAIN_TIMEOUT_SECONDS=2: the gateway lets this client go
    finally:
        ws.socket.close()
    assert rss_kib(pid) - before < 32 * 1024


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_websocket_messages_over_the_size_limit_close_the_connection(stack, entry):
    other = stack.grant()
    stack.route(other.sandbox_id, 3000, stack.upstreams.ws_port)
    with ws_connect(stack, entry, other, "/echo") as ws:
        ws.send(b"a" * 1000)
        assert ws.recv(5) == b"a" * 1000
        ws.send(b"b" * 70000)  # WS_MAX_MESSAGE_BYTES=65536
        with pytest.raises(ConnectionClosed):
            ws.recv(5)
    assert ws.close_code == 1009


def test_every_limit_is_documented():
    docs = (ROOT / "docs" / "gateway.md").read_text()
    for name in LIMITS:
        assert f"`{name}`" in docs, name


# --- revocation and expiry end what is already flowing -------------------------------------


class Stream(threading.Thread):
    """Reads a response to its end (or cut) in a thread: when it started, when it ended."""

    def __init__(self, stack: Stack, entry: str, grant, path: str) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{stack.port(entry)}{path}"
        self.headers = {"Host": grant.host(), "Cookie": stack.cookie(entry, grant)}
        self.started = threading.Event()
        self.ended_at = 0.0
        self.received = 0
        self.start()

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    self.received += len(chunk)
                    self.started.set()
        except httpx.HTTPError:
            pass
        self.ended_at = time.monotonic()


needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="two processes hear a revocation through Redis"
)


@needs_redis
def test_a_revocation_ends_open_sse_streams_and_downloads_in_both_processes(stack):
    grant = stack.grant()
    streams = [
        Stream(stack, entry, grant, path)
        for entry in ENTRIES
        for path in ("/sse?n=100000&every=0.05", "/trickle?mib=200&kib=64")
    ]
    for stream in streams:
        assert stream.started.wait(10)
    time.sleep(0.3)
    assert all(stream.is_alive() for stream in streams)
    stack.revoke(grant)  # from a third process: the fan-out goes through Redis
    revoked_at = time.monotonic()
    for stream in streams:
        stream.join(5)
        assert not stream.is_alive()
        assert stream.ended_at - revoked_at < 1.0
        assert stream.received < 200 << 20
    # And a new request with the same cookie is refused.
    response = get(stack, "fleet", grant.host(), headers=streams[0].headers)
    assert response.json()["code"] == "preview_grant_revoked"


def test_the_grant_running_out_ends_an_open_stream(stack, entry):
    grant = stack.grant(seconds=4)
    stream = Stream(stack, entry, grant, "/sse?n=100000&every=0.05")
    assert stream.started.wait(10)
    stream.join(8)
    assert not stream.is_alive()
    response = get(stack, entry, grant.host(), headers={**stream.headers, "Accept": "text/html"})
    assert response.status_code == 401
    assert "Link expired" in response.text and "What to do next" in response.text


def test_a_200_mib_upload_streams_through_with_flat_server_memory(stack, grant, entry):
    pid = stack.live.process.pid if entry == "default" else stack.fleet.pid
    cookie = stack.cookie(entry, grant)
    before = peak_rss_kib(pid)
    block = b"u" * (1 << 20)

    def body():
        for _ in range(200):
            yield block

    response = httpx.post(
        f"http://127.0.0.1:{stack.port(entry)}/upload",
        headers={"Host": grant.host(), "Cookie": cookie},
        content=body(),
        timeout=60,
    )
    assert response.json() == {"received": 200 << 20}
    grown = peak_rss_kib(pid) - before
    print(f"{entry}: peak RSS grew {grown} KiB over a 200 MiB upload")
    assert grown < 20 * 1024


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")
