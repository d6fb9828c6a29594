"""Real upstreams for gateway tests, on 127.0.0.1:0: an aiohttp app (echo, SSE, large and
chunked bodies, a mid-stream death, a slow answer) and a websockets echo server.

`resolve` is the gateway's PREVIEW_UPSTREAM_RESOLVER in tests: it answers from ROUTES,
or, in a gateway subprocess, from the TEST_PREVIEW_UPSTREAMS environment variable.
"""

from __future__ import annotations

import asyncio
import json
import os

from aiohttp import web
from websockets.asyncio.server import serve

from console.runtime import RuntimeError_

ROUTES: dict[tuple[str, int], tuple[str, int]] = {}
MIB = 1024 * 1024
WS_CLOSE_CODES: list[int | None] = []  # as the websockets upstream saw each close


def resolve(sandbox_id: str, port: int) -> tuple[str, int]:
    """ROUTES, else TEST_PREVIEW_UPSTREAMS: JSON {"sb_x:3000": "127.0.0.1:1234"} or @file."""
    if (sandbox_id, port) in ROUTES:
        return ROUTES[(sandbox_id, port)]
    given = os.environ.get("TEST_PREVIEW_UPSTREAMS", "{}")
    if given.startswith("@"):  # a file, so routes can be added after the server started
        with open(given[1:]) as file:
            given = file.read()
    extra = json.loads(given)
    if f"{sandbox_id}:{port}" in extra:
        host, _, found = extra[f"{sandbox_id}:{port}"].rpartition(":")
        return host, int(found)
    raise RuntimeError_(f"no test upstream for {sandbox_id}:{port}")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_length": len(body),
            "body_head": body[:64].decode("latin-1"),
        }
    )


async def status(request: web.Request) -> web.Response:
    response = web.Response(status=int(request.match_info["code"]), text="teapot says no")
    response.headers["X-Upstream"] = "yes"
    response.set_cookie("app_session", "abc")
    return response


async def sse(request: web.Request) -> web.StreamResponse:
    """Three events 0.4 s apart, or `?n=` events `?every=` seconds apart."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    every = float(request.query.get("every", "0.4"))
    for n in range(int(request.query.get("n", "3"))):
        await response.write(f"data: event {n}\n\n".encode())
        await asyncio.sleep(every)
    return response


async def trickle(request: web.Request) -> web.StreamResponse:
    """A slow download: `?kib=` KiB per 0.1 s for `?mib=` MiB."""
    size = int(request.query.get("mib", "200")) * MIB
    block = b"t" * (int(request.query.get("kib", "64")) * 1024)
    response = web.StreamResponse()
    response.content_length = size
    await response.prepare(request)
    for _ in range(size // len(block)):
        await response.write(block)
        await asyncio.sleep(0.1)
    return response


async def toss(request: web.Request) -> web.Response:
    """Headers an upstream must not get through: cookies for the whole preview domain, one
    named like the gateway's, and the gateway's own headers."""
    response = web.Response(text="tossed")
    domain = request.query.get("domain", "preview.localhost")
    response.headers.add("Set-Cookie", f"tossed=1; Domain={domain}; Path=/")
    response.headers.add("Set-Cookie", f"__ns_preview=planted; Domain={domain}; Path=/")
    response.headers.add("Set-Cookie", "__Host-ns_preview=planted; Path=/; Secure")
    response.headers.add("Set-Cookie", "own=1; Path=/; HttpOnly")
    response.headers["X-Nullspace-Preview-Error"] = "edge_token_invalid"
    response.headers["X-Nullspace-Anything"] = "x"
    return response


TOSS_PAGE = """<!doctype html><title>tosser</title><script>
document.cookie = "__ns_preview=planted-by-js; domain=preview.localhost; path=/";
document.cookie = "jstossed=1; domain=preview.localhost; path=/";
</script><p id="done">planted</p>"""


async def toss_page(request: web.Request) -> web.Response:
    """A page whose script plants cookies for the whole preview domain (no gateway can stop
    a script; the gateway's own check must survive the planted copy of its cookie)."""
    return web.Response(text=TOSS_PAGE, content_type="text/html")


async def big_head(request: web.Request) -> web.Response:
    response = web.Response(text="head")
    for n in range(int(request.query.get("n", "40"))):
        response.headers[f"X-Filler-{n}"] = "f" * 4000
    return response


async def large(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("mib", "1")) * MIB
    chunked = "chunked" in request.query
    response = web.StreamResponse()
    if not chunked:
        response.content_length = size
    await response.prepare(request)
    block = b"x" * (64 * 1024)
    for _ in range(size // len(block)):
        await response.write(block)
    return response


async def die(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 10 * MIB
    await response.prepare(request)
    await response.write(b"y" * 65536)
    await asyncio.sleep(0.1)
    request.transport.abort()
    return response


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "5")))
    return web.Response(text="late")


async def upload(request: web.Request) -> web.Response:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return web.json_response({"received": total})


def http_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/sse", sse)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/toss", toss)
    app.router.add_get("/toss-page", toss_page)
    app.router.add_get("/big-head", big_head)
    app.router.add_get("/large", large)
    app.router.add_get("/die", die)
    app.router.add_get("/slow", slow)
    app.router.add_post("/upload", upload)
    return app


async def start_http() -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(http_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def _ws_handler(connection) -> None:
    path = connection.request.path.split("?")[0]
    connection.seen_headers = dict(connection.request.headers.raw_items())
    if path == "/flood":  # as fast as the connection takes them, until it is closed
        block = b"f" * (32 << 10)
        try:
            for _ in range(8192):
                await connection.send(block)
        finally:
            WS_CLOSE_CODES.append(connection.close_code)
        return
    if path.startswith("/close/"):
        await connection.close(int(path.rsplit("/", 1)[1]), "bye")
        return
    if path == "/headers":
        await connection.send(
            json.dumps([[k, v] for k, v in connection.request.headers.raw_items()])
        )
    try:
        async for message in connection:
            await connection.send(message)
    finally:
        WS_CLOSE_CODES.append(connection.close_code)


async def start_websocket():
    def choose(connection, offered):
        # The first of ours the client offers; none offered is fine (no subprotocol).
        return next((p for p in ("chat.v2", "chat.v1") if p in offered), None)

    server = await serve(_ws_handler, "127.0.0.1", 0, select_subprotocol=choose)
    return server, server.sockets[0].getsockname()[1]
