"""The upstream HTTP client of this process: HTTP/1.1 on asyncio protocols with httptools'
parser (the one uvicorn uses), a keep-alive pool per upstream, one pool per event loop.

Not aiohttp's client: profiled under 32 concurrent requests it spent about 180 µs of CPU
per proxied request, half of the gateway's whole cost; this one does the same work in a
fraction of that (bench/README.md has the figures). Not httpx: its pool spends most of the
CPU choosing a connection under load (DESIGN section 8).

It forwards bytes as they are: no cookie jar, no decompression, no redirects, no proxy
from the environment, no headers of its own beyond the body's framing. The response body
is buffered only up to HIGH_WATER bytes; past that the upstream socket stops being read
until the reader catches up, so memory stays bounded whatever the sizes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools
from django.conf import settings

from gateway.flow import WriteFlow
from gateway.types import Address, Headers

Body = bytes | AsyncIterator[bytes] | None

# Timeouts and the response head cap are settings (PREVIEW_CONNECT_TIMEOUT_SECONDS,
# PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS, PREVIEW_READ_TIMEOUT_SECONDS,
# PREVIEW_MAX_RESPONSE_HEADER_BYTES, HTTP_DRAIN_TIMEOUT_SECONDS), read per request.
# Below the typical 60 s idle timeout of in-sandbox dev servers, so we rarely reuse a dead one.
KEEPALIVE_SECONDS = 30.0
IDLE_PER_UPSTREAM = 64
HIGH_WATER = 512 * 1024
LOW_WATER = 64 * 1024
# A request that failed on a reused connection before any answer byte is sent again once
# on a new connection (the upstream closed the idle one under us), when that is safe.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class UpstreamUnavailable(Exception):
    """Could not connect, or the upstream closed or garbled the exchange before answering."""


class UpstreamTimeout(Exception):
    """No connection, or nothing read, within the timeout."""


class UpstreamInvalid(Exception):
    """The upstream's answer cannot be passed on: its head is larger than allowed."""


class UpstreamCut(Exception):
    """The upstream ended the connection in the middle of the response body."""


class Connection(WriteFlow):
    """One upstream connection, and the response being read on it."""

    transport: asyncio.Transport  # set by connection_made, which asyncio calls first

    def __init__(self, pool: _Pool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self.first_byte_timeout = self.read_timeout = self.drain_timeout = 60.0
        self.max_head = 64 * 1024
        self._start()

    def _start(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.received = False
        self.error: Exception | None = None
        self.keep_alive = False
        self._head_request = False
        self._framed = False  # a length or chunks mark the end, not the connection closing
        self._interim = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._head_bytes = 0  # status line and headers as parsed
        self._head_raw = 0  # bytes fed while the head is still incomplete

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.idle_since and self.pool.is_idle(self):
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # Garbage, an answer nobody asked for, a 101 on a plain request, a head too large.
            if self.error is None:
                self._fail(UpstreamCut() if self.head_done else UpstreamUnavailable())
            self.transport.close()
            return
        if not self.head_done:
            # httptools gathers a header before calling on_header: count what it holds.
            self._head_raw += len(data)
            if self._head_raw > self.max_head:
                self._fail(UpstreamInvalid())
                self.transport.close()

    def eof_received(self) -> bool:
        return False  # close; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self.done:
            if self.head_done and not self._framed:
                self.done = True  # a body that ends when the connection does
            else:
                self._fail(UpstreamCut() if self.head_done else UpstreamUnavailable())
        self._wake()
        self._release_writers()

    # --- httptools callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            # A second answer to one request: stop here (data_received closes the connection).
            raise httptools.HttpParserError("unsolicited response")
        self.headers = []
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.max_head:
            self._fail(UpstreamInvalid())
            raise httptools.HttpParserError("response head too large")
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue and friends: the real answer follows
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self._parser.should_keep_alive()
        if self._head_request or status in (204, 304):
            self._framed = True
        if self._head_request:
            # httptools cannot be told a HEAD answer has no body: finish here and never
            # reuse this connection, whose parser still expects one.
            self.done = True
            self.keep_alive = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.headers = []
            return
        self.done = True
        self._wake()

    # --- waiting ------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timeout = self.read_timeout if self.head_done else self.first_byte_timeout
        timer = loop.call_later(timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(UpstreamTimeout())

    # --- the exchange -------------------------------------------------------------

    async def _send(self, head: bytes, body: Body, chunked: bool) -> None:
        transport = self.transport
        if body is None or isinstance(body, bytes):
            transport.write(head + body if body else head)
            return
        transport.write(head)
        async for chunk in body:
            if self.closed:
                break  # the upstream answered (or gave up) early; the answer decides
            if not chunk:
                continue  # an empty chunk would end a chunked body
            transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if self._writable is not None:
                try:
                    async with asyncio.timeout(self.drain_timeout):
                        await self.drain()
                except TimeoutError:
                    raise UpstreamTimeout() from None
        if chunked and not self.closed:
            transport.write(b"0\r\n\r\n")

    async def _read_head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    @property
    def body_complete(self) -> bool:
        """The whole body is already here (read_buffered() returns all of it)."""
        return self.done

    def read_buffered(self) -> bytes:
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The next piece of the body, b"" at its end. Raises UpstreamCut, UpstreamTimeout."""
        while True:
            if self._chunks:
                return self.read_buffered()
            if self.done:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()

    def release(self) -> None:
        """The exchange is over: keep the connection for the next request if it can be."""
        if self.done and self.keep_alive and not self.closed and not self._chunks:
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            transport = getattr(self, "transport", None)  # None: never connected
            if transport is not None:
                transport.close()


class _Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[tuple[str, int], list[Connection]] = {}
        self.pruned = loop.time()

    def take(self, key: tuple[str, int]) -> Connection | None:
        idle = self.idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_SECONDS:
                conn.reused = True
                conn.idle_since = 0.0
                return conn
            conn.close()
        return None

    def put(self, conn: Connection) -> None:
        now = self.loop.time()
        if now - self.pruned > KEEPALIVE_SECONDS:
            self.pruned = now
            for key in list(self.idle):  # close what no request came back for
                for stale in [c for c in self.idle[key] if now - c.idle_since >= KEEPALIVE_SECONDS]:
                    stale.close()
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= IDLE_PER_UPSTREAM:
            conn.close()
            return
        conn._start()
        conn.idle_since = now
        idle.append(conn)

    def is_idle(self, conn: Connection) -> bool:
        return conn in self.idle.get(conn.key, ())

    def forget(self, conn: Connection) -> None:
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def connect(self, key: tuple[str, int]) -> Connection:
        try:
            async with asyncio.timeout(settings.PREVIEW_CONNECT_TIMEOUT_SECONDS):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self, key), key[0], key[1]
                )
        except TimeoutError:
            raise UpstreamTimeout() from None
        except OSError:
            raise UpstreamUnavailable() from None
        return conn

    def close(self) -> None:
        for idle in list(self.idle.values()):
            for conn in list(idle):
                conn.close()
        self.idle.clear()


_pools: dict[asyncio.AbstractEventLoop, _Pool] = {}


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        for old in [old for old in _pools if old.is_closed()]:
            del _pools[old]
        pool = _pools[loop] = _Pool(loop)
    return pool


async def request(
    method: str,
    upstream: Address,
    target: bytes,
    headers: Headers,
    body: Body,
    *,
    length: bytes | None = None,
) -> Connection:
    """Send one request and read the answer's head; the body is then read from the returned
    Connection (read / read_buffered), which must end with release() or close().

    `body`: None, bytes, or an async iterator of bytes. `length`: the client's
    Content-Length for a streamed body (else it goes chunked). `headers` must not frame
    the body themselves (no content-length / transfer-encoding).
    """
    pool = _pool()
    lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("latin-1"), target)]
    for name, value in headers:
        lines.append(b"%s: %s\r\n" % (name, value))
    streamed = body is not None and not isinstance(body, bytes)
    if body is None or isinstance(body, bytes):
        if body or length is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body or b""))
    elif length is not None:
        lines.append(b"content-length: %s\r\n" % length)
    else:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    retry = not streamed and method in _RETRYABLE
    limits = (
        float(settings.PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS),
        float(settings.PREVIEW_READ_TIMEOUT_SECONDS),
        float(settings.HTTP_DRAIN_TIMEOUT_SECONDS),
        settings.PREVIEW_MAX_RESPONSE_HEADER_BYTES,
    )
    while True:
        conn = pool.take(upstream) or await pool.connect(upstream)
        conn._head_request = method == "HEAD"
        conn.first_byte_timeout, conn.read_timeout, conn.drain_timeout, conn.max_head = limits
        try:
            await conn._send(head, body, streamed and length is None)
            await conn._read_head()
            return conn
        except UpstreamUnavailable:
            conn.close()
            if retry and conn.reused and not conn.received:
                retry = False
                continue
            raise
        except BaseException:
            conn.close()
            raise


async def close() -> None:
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        pool.close()
