"""The real `nullspace` 0.1.9 CLI against a live server: preview URLs, proxy targets, `sandbox
url/host`, and the returned URLs fetched through the live server's gateway."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.live import free_port

pytestmark = pytest.mark.cli

PAGE = "<h1>hello from the sandbox</h1>"
ECHO = (
    "import asyncio, sys\n"
    "from websockets.asyncio.server import serve\n"
    "async def echo(ws):\n"
    "    async for m in ws:\n"
    "        await ws.send('echo:' + m)\n"
    "async def main():\n"
    "    async with serve(echo, '0.0.0.0', int(sys.argv[1])):\n"
    "        await asyncio.Future()\n"
    "asyncio.run(main())\n"
)


@pytest.fixture(scope="module")
def ports(live, sandbox_id) -> dict[str, int]:
    """An http.server (index.html) and a WebSocket echo server, both inside the sandbox."""
    web, ws = free_port(), free_port()
    live.cli("sandbox", "exec", sandbox_id, "--shell", f"echo '{PAGE}' > index.html", check=True)
    live.cli(
        "sandbox",
        "exec",
        sandbox_id,
        "--background",
        "--shell",
        f"python3 -m http.server {web} --bind 0.0.0.0",
        check=True,
    )
    live.cli(
        "sandbox",
        "exec",
        sandbox_id,
        "--background",
        "--shell",
        f'{live.sandbox_python(sandbox_id)} -c "{ECHO}" {ws}',
        check=True,
    )
    return {"web": web, "ws": ws}


def via_gateway(live, url: str, *, headers: dict | None = None, cookies: dict | None = None):
    """GET a preview URL by connecting to the live server with the URL's Host header."""
    parts = urlsplit(url)
    target = f"http://127.0.0.1:{live.port}{parts.path or '/'}" + (
        f"?{parts.query}" if parts.query else ""
    )
    headers = {"Host": parts.netloc, "Accept": "application/json", **(headers or {})}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return httpx.get(target, headers=headers, timeout=15)


def ws_via_gateway(live, url: str, headers: dict | None = None):
    """Open a preview WebSocket URL on the live server (the URL's authority is the Host header)."""
    return connect(
        url, host="127.0.0.1", port=live.port, additional_headers=headers or {}, open_timeout=10
    )


def open_signed_link(live, url: str) -> tuple[httpx.Response, dict]:
    """Follow the signed link as a browser would: 303 with a cookie, then the page."""
    first = via_gateway(live, url)
    assert first.status_code == 303, first.text
    assert "edge_token" not in first.headers["location"]
    cookies = dict(first.cookies)
    assert cookies, first.headers
    page = via_gateway(
        live, f"http://{urlsplit(url).netloc}{first.headers['location']}", cookies=cookies
    )
    return page, cookies


def test_sandbox_host_and_url_wait(live, sandbox_id, ports):
    port = ports["web"]
    label = sandbox_id.replace("_", "-")
    host = live.cli("sandbox", "host", sandbox_id, str(port), check=True).stdout.strip()
    assert host == f"{port}-{label}.preview.localhost:{live.port}"
    assert json.loads(
        live.cli("sandbox", "host", sandbox_id, str(port), "--json", check=True).stdout
    ) == {"host": host}

    url = live.cli(
        "sandbox", "url", sandbox_id, str(port), "--wait", "--timeout-secs", "20", check=True
    ).stdout.strip()
    assert url.startswith(f"http://{host}/?edge_token=")
    page, _ = open_signed_link(live, url)
    assert page.status_code == 200 and PAGE in page.text


def test_sandbox_url_wait_fails_when_nothing_listens(live, sandbox_id, ports):
    idle = free_port()
    result = live.cli(
        "sandbox",
        "url",
        sandbox_id,
        str(idle),
        "--wait",
        "--timeout-secs",
        "1",
        "--interval-ms",
        "200",
    )
    assert result.returncode == 1
    assert "0.0.0.0" in result.stderr


def test_preview_url_get_redacts_unless_raw(live, sandbox_id, ports):
    port = str(ports["web"])
    human = live.cli("sandbox", "preview-url", "get", sandbox_id, port, check=True).stdout
    assert "edge_token=<redacted>" in human and "nsg_" not in human
    assert re.search(r"^Grant: pvg_[a-z0-9]+$", human, re.M)
    assert "auth: direct/query" in human and "Status: active" in human
    raw = live.cli("sandbox", "preview-url", "get", sandbox_id, port, "--raw", check=True).stdout
    assert "edge_token=nsg_" in raw
    websocket = live.cli(
        "sandbox", "preview-url", "get", sandbox_id, port, "--websocket", "--raw", check=True
    ).stdout
    selected = re.search(r"^Selected websocket: (\S+)$", websocket, re.M).group(1)
    assert selected.startswith("ws://") and "edge_token=nsgw_" in selected


def test_preview_url_create_expires_wait_json_then_revoke(live, sandbox_id, ports):
    port = str(ports["web"])
    out = live.cli(
        "sandbox",
        "preview-url",
        "create",
        sandbox_id,
        port,
        "--expires",
        "15m",
        "--wait",
        "--json",
        check=True,
    ).stdout
    created = json.loads(out)
    grant = created["grant"]
    lifetime = datetime.fromisoformat(grant["expires_at"]) - datetime.fromisoformat(
        grant["issued_at"]
    )
    assert round(lifetime.total_seconds()) == 900
    assert created["readiness"]["ready"] is True and created["readiness"]["port"] == int(port)
    assert created["selected_transport"] == "http" and created["selected_url"] == created["url"]

    page, cookies = open_signed_link(live, created["url"])
    assert page.status_code == 200 and PAGE in page.text
    # The counters reach the list without waiting for the periodic flush.
    listed = json.loads(
        live.cli(
            "sandbox", "preview-url", "list", sandbox_id, "--port", port, "--json", check=True
        ).stdout
    )
    mine = next(item for item in listed["items"] if item["id"] == grant["id"])
    assert mine["http_request_count"] >= 1 and mine["bytes_out_count"] >= len(PAGE)
    human = live.cli("sandbox", "preview-url", "list", sandbox_id, check=True).stdout
    assert re.search(
        rf"^{grant['id']} port={port} status=active auth=direct/query .*http=\d+", human, re.M
    )

    revoked = json.loads(
        live.cli(
            "sandbox", "preview-url", "revoke", sandbox_id, grant["id"], "--json", check=True
        ).stdout
    )
    assert revoked["success"] is True and revoked["grant"]["status"] == "revoked"
    assert (
        live.cli(
            "sandbox", "preview-url", "revoke", sandbox_id, grant["id"], check=True
        ).stdout.strip()
        == f"Revoked {grant['id']}"
    )
    # The cookie minted from the revoked grant stops working at once.
    deadline = time.monotonic() + 2
    while True:
        after = via_gateway(live, f"http://{urlsplit(created['url']).netloc}/", cookies=cookies)
        if after.status_code in (401, 403) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after.status_code == 403 and after.json()["code"] == "preview_grant_revoked"
    status = json.loads(
        live.cli("sandbox", "preview-url", "list", sandbox_id, "--json", check=True).stdout
    )
    assert next(i for i in status["items"] if i["id"] == grant["id"])["status"] == "revoked"


def test_unknown_grant_and_reserved_port_errors(live, sandbox_id, ports):
    missing = live.cli("sandbox", "preview-url", "revoke", sandbox_id, "pvg_doesnotexist")
    assert missing.returncode == 3
    reserved = live.cli("sandbox", "preview-url", "get", sandbox_id, "22")
    assert reserved.returncode == 2 and "reserved" in reserved.stderr


def test_proxy_target_http_and_websocket(live, sandbox_id, ports):
    out = live.cli(
        "sandbox",
        "preview-proxy-target",
        "create",
        sandbox_id,
        str(ports["web"]),
        "--transport",
        "http",
        "--transport",
        "websocket",
        "--json",
        check=True,
    ).stdout
    target = json.loads(out)
    assert target["token_header_name"] == "x-nullspace-preview-proxy-token"
    assert target["http_token"].startswith("nsp_") and target["websocket_token"].startswith("nspw_")
    header = target["token_header_name"]
    forwarded = {
        "X-Forwarded-Host": "preview.example.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9",
    }
    page = via_gateway(
        live, target["http_url"], headers={header: target["http_token"], **forwarded}
    )
    assert page.status_code == 200 and PAGE in page.text
    # Kind-scoped: the WebSocket token does not open HTTP.
    wrong = via_gateway(live, target["http_url"], headers={header: target["websocket_token"]})
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "preview_proxy_token_scope_mismatch"
    human = live.cli(
        "sandbox",
        "preview-proxy-target",
        "create",
        sandbox_id,
        str(ports["web"]),
        "--transport",
        "http",
        check=True,
    ).stdout
    assert "HTTP token: <redacted>" in human and "WebSocket upstream: none" in human

    ws_target = json.loads(
        live.cli(
            "sandbox",
            "preview-proxy-target",
            "create",
            sandbox_id,
            str(ports["ws"]),
            "--transport",
            "websocket",
            "--json",
            check=True,
        ).stdout
    )

    async def echo() -> str:
        async with ws_via_gateway(
            live, ws_target["websocket_url"], {header: ws_target["websocket_token"]}
        ) as ws:
            await ws.send("ping")
            return await asyncio.wait_for(ws.recv(), 10)

    assert asyncio.run(echo()) == "echo:ping"


def test_direct_websocket_url_through_gateway(live, sandbox_id, ports):
    created = json.loads(
        live.cli(
            "sandbox",
            "preview-url",
            "create",
            sandbox_id,
            str(ports["ws"]),
            "--websocket",
            "--json",
            check=True,
        ).stdout
    )
    selected = created["selected_url"]
    assert selected == created["websocket_url"] and selected.startswith("ws://")

    async def echo() -> str:
        async with ws_via_gateway(live, selected) as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), 10)

    assert asyncio.run(echo()) == "echo:hi"
