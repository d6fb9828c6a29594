"""The delivery HTTP client: one POST, bounded in every way, to an address already
checked by console/webhooks/targets.py.

It connects to the checked IP itself (the Host header and TLS name stay the URL's
host), follows no redirect (a 3xx is a failed attempt), gives up after
CONNECT_TIMEOUT to connect and TOTAL_TIMEOUT overall, and reads at most
MAX_RESPONSE_BYTES of the answer.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from console.webhooks.targets import Target

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_BYTES = 1024
USER_AGENT = "Nullspace-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    duration_ms: int
    response_status: int | None = None
    error_code: str = ""
    error_message: str = ""
    excerpt: str = ""

    @property
    def ok(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT)
        self.sock.settimeout(self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, timeout: float) -> None:
        self._tls = _tls()
        super().__init__(target.host, target.port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT)
        raw.settimeout(self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def post(target: Target, body: bytes, headers: dict[str, str]) -> Outcome:
    began = time.monotonic()
    deadline = began + TOTAL_TIMEOUT

    def elapsed() -> int:
        return int((time.monotonic() - began) * 1000)

    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = kind(target, target.addresses[0], timeout=TOTAL_TIMEOUT)
    try:
        conn.request(
            "POST",
            target.path,
            body=body,
            headers={
                **headers,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Connection": "close",
            },
        )
        response = conn.getresponse()
        excerpt = _read_bounded(conn, response, deadline)
        return Outcome(elapsed(), response.status, excerpt=excerpt)
    except TimeoutError:
        return Outcome(elapsed(), error_code="timeout", error_message="the receiver timed out")
    except ssl.SSLError as exc:
        return Outcome(elapsed(), error_code="tls_error", error_message=str(exc)[:300])
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(
            elapsed(), error_code="connection_failed", error_message=f"{type(exc).__name__}: {exc}"
        )
    finally:
        conn.close()


def _read_bounded(
    conn: http.client.HTTPConnection, response: http.client.HTTPResponse, deadline: float
) -> str:
    """Up to MAX_RESPONSE_BYTES of the body (the rest is dropped with the connection);
    the first EXCERPT_BYTES are kept for the delivery log."""
    kept = b""
    read = 0
    while read < MAX_RESPONSE_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if conn.sock is not None:
            conn.sock.settimeout(left)  # a slow drip cannot stretch past the deadline
        chunk = response.read1(min(16384, MAX_RESPONSE_BYTES - read))
        if not chunk:
            break
        read += len(chunk)
        if len(kept) < EXCERPT_BYTES:
            kept += chunk[: EXCERPT_BYTES - len(kept)]
    return kept.decode("utf-8", "replace")
