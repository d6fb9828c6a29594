"""The upstream WebSocket leg's client: RFC 6455 on an asyncio protocol, just what a splice
needs (handshake with subprotocols, text/binary messages, ping/pong, close codes).

Not the websockets library's asyncio client: profiled under 32 echoing connections its
per-message machinery (locks, context managers, an assembler, a random key per frame from
the OS) cost more CPU than the proxying itself; this one parses frames straight out of
data_received. No extensions are offered, so no compression; we send no pings of our own
(the client's pings pass through as its own frames are answered by its server).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections import deque
from typing import cast

try:
    from websockets.speedups import apply_mask
except ImportError:  # a build of websockets without its C extension
    from websockets.utils import apply_mask

from gateway.flow import WriteFlow
from gateway.types import Address, Headers

MAX_HANDSHAKE_BYTES = 64 * 1024
CLOSE_TIMEOUT = 5.0
# Messages waiting for the client beyond this: stop reading the upstream until it catches up.
HIGH_WATER = 1024 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeFailed(Exception):
    """The upstream did not accept the WebSocket (no 101, wrong accept key, bad subprotocol)."""


class Closed(Exception):
    """The connection is closed; close_code says how."""


class _Masks:
    """Masking keys from the OS's strong random source, read 4 KiB at a time."""

    def __init__(self) -> None:
        self.pool = b""
        self.at = 0

    def next(self) -> bytes:
        if self.at >= len(self.pool):
            self.pool, self.at = os.urandom(4096), 0
        self.at += 4
        return self.pool[self.at - 4 : self.at]


_masks = _Masks()


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = _masks.next()
    return head + mask + (apply_mask(payload, mask) if payload else b"")


class UpstreamSocket(WriteFlow):
    transport: asyncio.Transport  # set by connection_made, which asyncio calls first

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.subprotocol: str | None = None
        self.close_code: int | None = None  # 1005: closed without a code, 1006: no close frame
        self._handshake: asyncio.Future[bytes] | None = None
        self._head = bytearray()
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0
        self._messages: deque[str | bytes] = deque()
        self._queued = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._close_sent = False
        self._closed = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        handshake = self._handshake
        if handshake is not None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_HANDSHAKE_BYTES:
                    self._fail_handshake()
                return
            if not handshake.done():
                handshake.set_result(bytes(self._head[: end + 4]))
            self._handshake = None
            data = bytes(self._head[end + 4 :])
            self._head = bytearray()
            if not data:
                return
        self._buffer += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(HandshakeFailed("connection closed"))
        if self.close_code is None:
            self.close_code = 1006
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake()
        self._release_writers()

    # --- frames -------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        at = 0
        size = len(buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            if second & 0x80 or first & 0x70:
                return self._protocol_error(1002)  # masked by a server, or reserved bits
            length = second & 0x7F
            start = at + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if length > self.max_size:
                return self._protocol_error(1009)
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            at = start + length
            if not self._frame(first & 0x80, first & 0x0F, payload):
                return
        if at:
            del buffer[:at]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> bool:
        """Handle one frame; False when the connection is done with."""
        if opcode >= _CLOSE:
            if not fin or len(payload) > 125:
                self._protocol_error(1002)
                return False
            if opcode == _PING:
                self._write(_frame(_PONG, payload))
            elif opcode == _CLOSE:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self.close_code = code
                if not self._close_sent:
                    self._close_sent = True
                    self._write(_frame(_CLOSE, payload[:2]))
                self.transport.close()  # the server closes TCP first; we need not wait
                return False
            return True
        if opcode == _CONTINUATION:
            if not self._fragments:
                self._protocol_error(1002)
                return False
            self._fragments.append(payload)
            self._fragment_size += len(payload)  # a running total: linear in the fragments
            if self._fragment_size > self.max_size:
                self._protocol_error(1009)
                return False
            if not fin:
                return True
            opcode, payload = self._fragment_opcode, b"".join(self._fragments)
            self._fragments = []
            self._fragment_size = 0
        elif opcode in (_TEXT, _BINARY):
            if self._fragments:
                self._protocol_error(1002)
                return False
            if not fin:
                self._fragment_opcode = opcode
                self._fragments = [payload]
                self._fragment_size = len(payload)
                return True
        else:
            self._protocol_error(1002)
            return False
        message: str | bytes = payload
        if opcode == _TEXT:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                self._protocol_error(1007)
                return False
        self._messages.append(message)
        self._queued += len(message)
        if self._queued > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()
        return True

    def _protocol_error(self, code: int) -> None:
        self.close_code = code
        if not self._close_sent:
            self._close_sent = True
            self._write(_frame(_CLOSE, struct.pack("!H", code)))
        self.transport.close()

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail_handshake(self) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(HandshakeFailed("handshake too large"))
        self.transport.close()

    # --- the connection, as the splice uses it --------------------------------------

    def take(self) -> str | bytes | None:
        """The next message if one is here, else None (then wait())."""
        messages = self._messages
        if not messages:
            return None
        message = messages.popleft()
        self._queued -= len(message)
        if self._reading_paused and self._queued < HIGH_WATER // 2:
            self._reading_paused = False
            self.transport.resume_reading()
        return message

    async def wait(self) -> None:
        """Until a message is here; raises Closed when none can come any more."""
        while not self._messages:
            if self._closed.done() or self.close_code is not None:
                raise Closed()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def recv(self) -> str | bytes:
        """The next message; raises Closed when there are no more."""
        message = self.take()
        while message is None:
            await self.wait()
            message = self.take()
        return message

    def __aiter__(self) -> UpstreamSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except Closed:
            raise StopAsyncIteration from None

    def write(self, message: str | bytes) -> bool:
        """Send a message without waiting; True when the socket is full (then drain())."""
        if self._close_sent or self.transport.is_closing():
            raise Closed()
        if isinstance(message, str):
            self.transport.write(_frame(_TEXT, message.encode()))
        else:
            self.transport.write(_frame(_BINARY, message))
        return self._writable is not None

    async def send(self, message: str | bytes) -> None:
        if self.write(message):
            await self.drain()

    async def close(self, code: int = 1000) -> None:
        """Send a close frame (once) and wait, briefly, for the server to end the connection."""
        if not self._close_sent and not self.transport.is_closing():
            self._close_sent = True
            self.transport.write(_frame(_CLOSE, struct.pack("!H", code)))
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), CLOSE_TIMEOUT)
        except TimeoutError:
            pass
        self.transport.close()


def _accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


async def connect(
    upstream: Address,
    *,
    target: bytes,
    host: bytes,
    headers: Headers,
    subprotocols: list[str] | None,
    max_size: int,
    open_timeout: float,
) -> UpstreamSocket:
    """Open the upstream leg. Raises OSError, TimeoutError or HandshakeFailed."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(open_timeout):
        _, sock = await loop.create_connection(
            lambda: UpstreamSocket(max_size), upstream[0], upstream[1]
        )
        try:
            await _handshake(sock, loop, target, host, headers, subprotocols)
        except BaseException:
            sock.transport.abort()
            raise
    return sock


async def _handshake(
    sock: UpstreamSocket,
    loop: asyncio.AbstractEventLoop,
    target: bytes,
    host: bytes,
    headers: Headers,
    subprotocols: list[str] | None,
) -> None:
    key = base64.b64encode(os.urandom(16))
    lines = [
        b"GET %s HTTP/1.1\r\n" % target,
        b"host: %s\r\n" % host,
        b"upgrade: websocket\r\nconnection: Upgrade\r\n",
        b"sec-websocket-key: %s\r\nsec-websocket-version: 13\r\n" % key,
    ]
    if subprotocols:
        lines.append(b"sec-websocket-protocol: %s\r\n" % ", ".join(subprotocols).encode())
    lines += [b"%s: %s\r\n" % pair for pair in headers]
    lines.append(b"\r\n")
    sock._handshake = loop.create_future()
    sock.transport.write(b"".join(lines))
    head = await sock._handshake
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        raise HandshakeFailed(f"status {parts[1] if len(parts) > 1 else '?'}")
    answer: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            answer[name.strip().lower()] = value.strip()
    if answer.get("upgrade", "").lower() != "websocket":
        raise HandshakeFailed("no upgrade")
    if "upgrade" not in answer.get("connection", "").lower():
        raise HandshakeFailed("no connection upgrade")
    if answer.get("sec-websocket-accept", "").encode() != _accept_key(key):
        raise HandshakeFailed("wrong accept key")
    if answer.get("sec-websocket-extensions"):
        raise HandshakeFailed("an extension we did not offer")
    chosen = answer.get("sec-websocket-protocol")
    if chosen is not None and chosen not in (subprotocols or ()):
        raise HandshakeFailed("a subprotocol we did not offer")
    sock.subprotocol = chosen
