from __future__ import annotations

import functools
import gc
import json
import logging
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run the all-in-one process: the console, /v1 and the preview gateway on one HTTP "
        "server (uvicorn by default, chosen by measurement: bench/README.md), with the "
        "background worker in a thread."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument(
            "--port", type=int, default=settings.PORT, help="Default: $PORT, else 8000"
        )
        parser.add_argument("--no-worker", action="store_true", help="Do not start the job worker")
        parser.add_argument(
            "--worker-threads", type=int, default=4, help="Jobs the built-in worker runs at once"
        )
        parser.add_argument(
            "--server",
            choices=("uvicorn", "daphne"),
            default="uvicorn",
            help="uvicorn (default) streams request bodies and enforces the request limits "
            "(docs/gateway.md); daphne buffers whole request bodies before the app runs.",
        )
        parser.add_argument(
            "--loop",
            choices=("uvloop", "asyncio"),
            default="uvloop",
            help="Event loop (uvloop when installed). Under daphne it is read by manage.py.",
        )

    def handle(self, *args, **options):
        from console.jobs.worker import run_forever

        stop = threading.Event()
        if not options["no_worker"]:
            threads = max(1, min(64, options["worker_threads"]))
            threading.Thread(
                target=run_forever, args=(stop, threads), name="worker", daemon=True
            ).start()
        _restore_ssh_relay()
        self.stdout.write(
            f"Nullspace Console on http://localhost:{options['port']}/ ({options['server']})"
        )
        # Objects alive after start-up never need collecting; freezing them cuts full-GC
        # pauses that show up as p99 tails under load (bench/README.md).
        gc.collect()
        gc.freeze()
        try:
            if options["server"] == "daphne":
                _run_daphne(options)
            else:
                _run_uvicorn(options)
        finally:
            stop.set()


def _restore_ssh_relay() -> None:
    """Reopen the SSH relay's ports of sandboxes with live access (docs/ssh.md); a failure
    costs only those ports until the next access, never the start."""
    from django.db import connections

    from console.ssh.relay import restore

    try:
        restore()
    except Exception:
        log.exception("reopening the SSH relay's ports failed")
    finally:
        connections.close_all()  # this thread serves no requests: hold no connection


def _run_uvicorn(options) -> None:
    import uvicorn
    from django.conf import settings

    from console.asgi import application
    from gateway.httpserver import HttpProtocol
    from gateway.lifespan import with_lifespan

    loop = options["loop"]
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            loop = "asyncio"
    config = uvicorn.Config(
        with_lifespan(application),
        host=options["host"],
        port=options["port"],
        loop=loop,
        http=HttpProtocol,
        ws="websockets-sansio",
        ws_max_size=settings.WS_MAX_MESSAGE_BYTES,
        timeout_keep_alive=settings.HTTP_KEEPALIVE_SECONDS,
        # Open streams (SSE, WebSockets) get this long to finish on shutdown.
        timeout_graceful_shutdown=10,
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* from a client is not who the client is
        server_header=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


def _run_daphne(options) -> None:
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from django.conf import settings

    from console.asgi import application

    _skip_twisted_access_lines()
    endpoints = build_endpoint_description_strings(host=options["host"], port=options["port"])
    Server(
        application=application,
        endpoints=endpoints,
        signal_handlers=True,
        websocket_timeout=86400,
        # The gateway's upstream wait ends first, so the client hears why.
        websocket_handshake_timeout=settings.PREVIEW_WS_OPEN_TIMEOUT_SECONDS + 1,
        http_timeout=None,
        application_close_timeout=10,
    ).run()


def _skip_twisted_access_lines() -> None:
    """Twisted formats an access-log line for every request, and daphne (at its default
    verbosity) sends Twisted's log nowhere: about 5% of a proxied request's CPU for nothing."""
    import daphne.server
    from daphne.http_protocol import HTTPFactory

    class Factory(HTTPFactory):
        def log(self, request) -> None:
            pass

        def buildProtocol(self, addr):
            protocol = super().buildProtocol(addr)
            # Twisted wraps the HTTP/1.1 channel (in `_channel`) to allow an h2 upgrade.
            channel = getattr(protocol, "_channel", protocol)
            if channel is not None:
                channel.lineLengthExceeded = functools.partial(answer_overlong_line, channel)
            return protocol

    daphne.server.HTTPFactory = Factory


def answer_overlong_line(protocol, line: bytes) -> None:
    """Twisted drops a request line or header line past 16 KiB without a word; answer
    414 (the request line, usually a huge URL) or 431 (a header) in the API's envelope."""
    first_line = getattr(protocol, "_HTTPChannel__first_line", 1)
    status, reason, code = (
        (414, b"URI Too Long", "request_line_too_long")
        if first_line
        else (431, b"Request Header Fields Too Large", "request_headers_too_large")
    )
    from console.middleware import new_request_id

    limit, request_id = protocol.MAX_LENGTH, new_request_id()
    body = json.dumps(
        {"error": f"A request line or header is longer than {limit} bytes", "code": code,
         "request_id": request_id}
    ).encode()  # fmt: skip
    protocol.transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"X-Request-Id: %s\r\nConnection: close\r\n\r\n%s"
        % (status, reason, len(body), request_id.encode(), body)
    )
    protocol.transport.loseConnection()


def choose_loop(argv: list[str]) -> None:
    """Called by manage.py before Django starts: daphne builds its event loop when Django
    loads the daphne app, from the loop policy in force then, so `serve --server daphne
    --loop` has to be settled before that. uvloop when installed, unless `--loop asyncio`."""
    if argv[1:2] != ["serve"]:
        return
    args = argv[2:]
    if "--loop=asyncio" in args or any(
        a == "--loop" and b == "asyncio" for a, b in zip(args, args[1:], strict=False)
    ):
        return
    try:
        import uvloop
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
