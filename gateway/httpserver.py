"""uvicorn's httptools protocol with the limits a public server needs, for the console and
the gateway alike (`manage.py serve` and the fleet entry both use it):

- the request head (line + headers) within HTTP_MAX_HEADER_BYTES and HTTP_MAX_HEADERS,
  else 431; counted as bytes arrive, since httptools holds a header until it is whole;
- the head within HTTP_HEADER_TIMEOUT_SECONDS of the connection or of the request's
  first byte, else 408 and close (slowloris);
- an absolute-form target (`GET http://name/ HTTP/1.1`) routes by its authority, as
  RFC 9112 says, by making it the Host; two Host headers are a 400;
- a response that ends before its request body was read (a refusal) closes the
  connection after the answer instead of reading the rest of an upload;
- `scope["extensions"]["nullspace.abort"]` lets the app cut the connection.

Idle keep-alive is uvicorn's timeout_keep_alive (HTTP_KEEPALIVE_SECONDS). Limits are
read from Django settings when the first connection arrives.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ABORT_EXTENSION = "nullspace.abort"

# After refusing a request whose body is still coming: read and drop at most this much,
# for this long, so the client gets to read our answer before the connection closes.
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0

_limits: tuple[int, int, float] | None = None


def _read_limits() -> tuple[int, int, float]:
    global _limits
    if _limits is None:
        from django.conf import settings

        _limits = (
            settings.HTTP_MAX_HEADER_BYTES,
            settings.HTTP_MAX_HEADERS,
            float(settings.HTTP_HEADER_TIMEOUT_SECONDS),
        )
    return _limits


def reset_limits() -> None:
    """Tests that change the settings call this."""
    global _limits
    _limits = None


class _TooLarge(Exception):
    pass


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.max_headers, self.head_timeout = _read_limits()
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_size = 0  # request line and headers as parsed
        self._hosts = 0
        self._lingering = 0

    # --- the connection ---------------------------------------------------------------

    # asyncio declares BaseTransport; a TCP server always hands a Transport, whose
    # pause_reading/write this protocol uses.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingering -= len(data)
            if self._lingering <= 0:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except _TooLarge:
            self._refuse(431, "Request header fields too large.")
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                self._refuse(431, "Request header fields too large.")
                return
            self._refuse(400, "Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self._refuse(400, "Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, "Request header fields too large.")

    # --- the head -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._head_size = 0
        self._hosts = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.max_head_bytes:
            raise _TooLarge()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self.max_headers or self._head_size > self.max_head_bytes:
            raise _TooLarge()
        if name.lower() == b"host":
            self._hosts += 1
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what comes next is the next request's head

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        if self._hosts > 1:
            raise httptools.HttpParserError("two Host headers")
        url = self.url
        if url[:1] != b"/" and url != b"*":
            self._take_authority(url)
        super().on_headers_complete()
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[ABORT_EXTENSION] = self._abort

    def _abort(self) -> None:
        """Cut with a reset: a plain close would leave what the kernel still holds for a
        slow client trickling out of an orphaned socket for minutes, and the client would
        take the cut end for a complete answer (SO_LINGER 0 drops it and sends RST)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def _take_authority(self, url: bytes) -> None:
        """Absolute-form: the authority is the host the request is for (Host is ignored)."""
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise httptools.HttpParserError("bad request target") from None
        if not parsed.host:
            raise httptools.HttpParserError("bad request target")
        authority = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
        self.headers[:] = [(k, v) for k, v in self.headers if k != b"host"]
        self.headers.append((b"host", authority))

    # --- timers and refusals ------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(408, "Request header timeout.")

    def _refuse(self, status: int, message: str) -> None:
        self._disarm_head_timer()
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields"}
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.get(status, b"Error"), len(body), body)
        )
        self.transport.close()

    # --- after the answer -------------------------------------------------------------

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            # Answered (a refusal, say) before the body was read: do not read an upload
            # nobody wants. Drop a little so the client can read the answer, then close.
            self.server_state.total_requests += 1
            self._lingering = LINGER_BYTES
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
            return
        super().on_response_complete()
