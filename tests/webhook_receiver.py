"""A real webhook receiver for tests and the bench: an HTTP server on loopback that
checks each request's Standard Webhooks signature on its own (not with our signing
module), answers 500 to the first `fail_first` attempts of each message, then 200."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    message_id: str
    attempt: int
    verified: bool
    status: int
    body: dict
    at: float  # time.time() when it arrived


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0
    # Seconds to hold the first attempt of each message before answering (a slow receiver).
    hold_first: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/lifecycle?src=test"

    def verify(self, headers, body: bytes) -> bool:
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
        given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
        return fresh and any(hmac.compare_digest(expected, s) for s in given)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    message_id = self.headers.get("webhook-id", "")
                    attempt = 1 + sum(r.message_id == message_id for r in receiver.received)
                    status = 500 if attempt <= receiver.fail_first else 200
                    receiver.received.append(
                        Received(
                            message_id,
                            attempt,
                            receiver.verify(self.headers, body),
                            status,
                            json.loads(body or b"{}"),
                            time.time(),
                        )
                    )
                if attempt == 1 and receiver.hold_first:
                    time.sleep(receiver.hold_first)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender is gone (a killed worker)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                seen = list(self.received)
            if predicate(seen):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"receiver saw {len(self.received)} requests, not what was awaited")
