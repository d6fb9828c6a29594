"""The gateway's pure parts fed bytes and strings, no sockets: the host parser, the route
kinds, the cookie and response-header rules, and the upstream WebSocket framing (fuzzed
with hypothesis: any split of any sequence of frames gives the same messages)."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import routes
from gateway.headers import cookie_values, response_headers, set_cookie
from gateway.hosts import Host, canonical, preview_label, request_target
from gateway.wsclient import UpstreamSocket

DOMAIN = "preview.localhost"


# --- hosts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, name, valid",
    [
        ("3000-sb-ab.preview.localhost", "3000-sb-ab.preview.localhost", True),
        ("3000-SB-AB.Preview.LOCALHOST.", "3000-sb-ab.preview.localhost", True),
        ("3000-sb-ab.preview.localhost.:8000", "3000-sb-ab.preview.localhost", True),
        (" localhost:8000 ", "localhost", True),
        ("3000-sb-ab.preview.localhost:abc", "3000-sb-ab.preview.localhost", False),
        ("3000-sb-ab.preview.localhost:123456", "3000-sb-ab.preview.localhost", False),
        ("a..preview.localhost", "a..preview.localhost", False),
        (".preview.localhost", ".preview.localhost", False),
        ("", "", False),
        ("a_b.preview.localhost", "a_b.preview.localhost", False),
        ("[::1]:8000", "[::1]", True),
        ("[::1", "[::1", False),
    ],
)
def test_canonical_host(raw, name, valid):
    assert canonical(raw) == Host(name, valid)


@pytest.mark.parametrize(
    "name, label",
    [
        ("preview.localhost", ""),
        ("3000-sb-ab.preview.localhost", "3000-sb-ab"),
        ("x.3000-sb-ab.preview.localhost", "x.3000-sb-ab"),
        ("notpreview.localhost", None),
        ("localhost", None),
        ("preview.localhost.evil.test", None),
    ],
)
def test_preview_label(name, label):
    assert preview_label(Host(name, True), DOMAIN) == label


@pytest.mark.parametrize(
    "label, parsed",
    [
        ("3000-sb-ab12", ("sb_ab12", 3000)),
        ("1-sb-x", ("sb_x", 1)),
        ("65535-sb-x", ("sb_x", 65535)),
        ("65536-sb-x", None),
        ("08080-sb-x", None),
        ("0-sb-x", None),
        ("3000-sb", None),
        ("3000-sb-x-y", None),
        ("x.3000-sb-x", None),
        ("", None),
    ],
)
def test_the_sandbox_port_route_kind(label, parsed):
    found = routes.parse(label)
    if parsed is None:
        assert found is None
    else:
        kind, route = found
        assert kind.name == "sandbox_port" and (route.subject, route.port) == parsed


@pytest.mark.parametrize(
    "raw_path, host, target",
    [
        (b"/a/b", "h.preview.localhost", b"/a/b"),
        (b"//evil.test/", "h.preview.localhost", b"/evil.test/"),
        (b"/\\evil.test/", "h.preview.localhost", b"/evil.test/"),
        (b"///\\/evil.test", "h.preview.localhost", b"/evil.test"),
        (b"http://h.preview.localhost/x", "H.preview.localhost.", b"/x"),
        (b"http://h.preview.localhost", "h.preview.localhost", b"/"),
        (b"http://other.test/x", "h.preview.localhost", None),
        (b"javascript:alert(1)", "h.preview.localhost", None),
    ],
)
def test_request_target(raw_path, host, target):
    scope = {"raw_path": raw_path, "path": "", "headers": [(b"host", host.encode())]}
    assert request_target(scope) == target


# --- cookies and response headers ----------------------------------------------------------


def test_set_cookie_keeps_cookies_host_only_and_drops_ours():
    assert set_cookie(b"a=1; Domain=preview.localhost; Path=/") == b"a=1; Path=/"
    assert set_cookie(b"a=1; path=/; DOMAIN=.x; domain = y ; Secure") == b"a=1; path=/; Secure"
    assert set_cookie(b"a=domain; Path=/") == b"a=domain; Path=/"
    for ours in (b"__ns_preview=x", b"__Host-ns_preview=x; Secure", b" __NS_PREVIEW=x"):
        assert set_cookie(ours) is None


def test_response_headers_drop_ours_and_hop_by_hop():
    kept = response_headers(
        [
            (b"Content-Type", b"text/plain"),
            (b"X-Nullspace-Preview-Error", b"edge_token_invalid"),
            (b"x-nullspace-whatever", b"1"),
            (b"Connection", b"close, x-private"),
            (b"X-Private", b"1"),
            (b"Set-Cookie", b"s=1; Domain=preview.localhost"),
            (b"Set-Cookie", b"__ns_preview=planted"),
        ]
    )
    assert kept == [(b"content-type", b"text/plain"), (b"set-cookie", b"s=1")]


def test_cookie_values_finds_every_copy_and_only_host_prefixed_when_secure():
    header = b"a=1; __ns_preview=one; __Host-ns_preview=two; __ns_preview=three"
    assert cookie_values(header) == ["one", "two", "three"]
    assert cookie_values(header, secure_only=True) == ["two"]
    assert cookie_values(b"a=1") == []


# --- the upstream WebSocket framing -------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, mask | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask | 127, length)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def fed(data: bytes, cuts: list[int], max_size: int = 1 << 20) -> UpstreamSocket:
    """An UpstreamSocket after `data` arrived in pieces split at `cuts`."""

    async def run() -> UpstreamSocket:
        sock = UpstreamSocket(max_size)
        sock.connection_made(_Transport())
        at = 0
        for cut in sorted(set(cuts)) + [len(data)]:
            if cut > at:
                sock.data_received(data[at:cut])
                at = cut
        return sock

    return asyncio.run(run())


def messages_of(sock: UpstreamSocket) -> list[str | bytes]:
    out = []
    while (message := sock.take()) is not None:
        out.append(message)
    return out


sizes = st.sampled_from([0, 1, 13, 125, 126, 127, 65535, 65536, 70000])
message = st.one_of(
    st.builds(lambda n: b"\x07" * n, sizes),
    st.text(max_size=300),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(message, st.integers(1, 4), st.booleans()), min_size=1, max_size=6),
    st.data(),
)
def test_any_split_of_any_frames_gives_the_same_messages(sent, data):
    stream = b""
    pings = 0
    for body, pieces, ping_between in sent:
        payload = body.encode() if isinstance(body, str) else body
        opcode = 0x1 if isinstance(body, str) else 0x2
        step = max(1, -(-len(payload) // pieces))
        parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        for n, part in enumerate(parts):
            stream += frame(opcode if n == 0 else 0x0, part, fin=n == len(parts) - 1)
            if ping_between and n == 0:
                stream += frame(0x9, b"p")  # a control frame between fragments
                pings += 1
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    sock = fed(stream, cuts)
    assert messages_of(sock) == [body for body, _, _ in sent]
    assert sock.close_code is None
    pongs = [w for w in sock.transport.written if w[0] == 0x8A]
    assert len(pongs) == pings


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(0x1, b"x", masked=True), 1002),  # a server must not mask
        (bytes([0xC1, 0x01]) + b"x", 1002),  # a reserved bit (no extension was agreed)
        (frame(0x0, b"x"), 1002),  # a continuation with nothing to continue
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # a new message mid-message
        (frame(0x9, b"p", fin=False), 1002),  # a fragmented control frame
        (frame(0x9, b"p" * 126), 1002),  # a control frame over 125 bytes
        (frame(0x3, b"x"), 1002),  # an unknown opcode
        (frame(0x1, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (frame(0x2, b"x" * 2000), 1009),  # over max_size
        (frame(0x2, b"x" * 600, fin=False) + frame(0x0, b"x" * 600), 1009),  # by fragments
    ],
)
def test_protocol_errors_close_with_their_code(data, code):
    sock = fed(data, [], max_size=1000)
    assert sock.close_code == code
    assert sock.transport.closed
    close = sock.transport.written[-1]  # our masked close frame: head, mask, masked code
    assert close[0] == 0x88
    unmasked = bytes(a ^ b for a, b in zip(close[6:8], close[2:4], strict=True))
    assert struct.unpack("!H", unmasked)[0] == code


def test_fragments_are_accounted_in_linear_time():
    # 200,000 one-byte fragments of one message, fed in one piece: the old running sum over
    # all fragments took seconds for 30 KB; a linear count takes a fraction of that.
    count = 200_000
    data = frame(0x2, b"a", fin=False) + frame(0x0, b"a", fin=False) * (count - 2)
    data += frame(0x0, b"a")
    started = time.process_time()
    sock = fed(data, [])
    elapsed = time.process_time() - started
    assert messages_of(sock) == [b"a" * count]
    assert elapsed < 5, f"{elapsed:.1f} s of CPU for {count} fragments"


def test_the_gateway_status_names_are_the_models():
    from console.models import SandboxStatus
    from gateway import upstream

    assert (upstream.RUNNING, upstream.PAUSED) == (SandboxStatus.RUNNING, SandboxStatus.PAUSED)
    assert (upstream.CREATING, upstream.DESTROYED) == (
        SandboxStatus.CREATING,
        SandboxStatus.DESTROYED,
    )
