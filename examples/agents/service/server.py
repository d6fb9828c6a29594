"""A minimal agent service: an HTTP page on 0.0.0.0:$PORT (8080) and a health route."""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING_TEXT", "hello from the example service")
VERSION_ID = os.environ.get("NULLSPACE_VERSION_ID", "local")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok\n"
            content_type = "text/plain"
        else:
            body = f"<h1>{GREETING}</h1><p>version {VERSION_ID}</p>\n".encode()
            content_type = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if self.path != "/healthz":  # the platform's health checks would drown the log
            print(f"{self.command} {self.path} -> served", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"listening on 0.0.0.0:{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
