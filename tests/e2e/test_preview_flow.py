"""The preview flow in a real browser (Debian chromium via Playwright) against a live server:
a page served in a sandbox opens a WebSocket through the gateway to an echo server in the
same sandbox; the signed link shows the page and the echo; revoking the grant in the
console makes a reload show the revoked page. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.e2e.conftest import add_user, needs_chromium, sign_in
from tests.e2e.conftest import shot as _shot
from tests.live import free_port

pytestmark = [pytest.mark.e2e, needs_chromium]

# The page opens the WebSocket URL given in ?ws= (a signed link to the echo server's port of
# the same sandbox, through the gateway) and shows what comes back.
INDEX = """<!doctype html><title>sandbox app</title>
<h1>Hello from the sandbox</h1>
<p id="echo">waiting</p>
<script>
const ws = new WebSocket(new URLSearchParams(location.search).get("ws"));
ws.onopen = () => ws.send("ping from the browser");
ws.onmessage = (event) => { document.getElementById("echo").textContent = event.data; };
ws.onerror = () => { document.getElementById("echo").textContent = "websocket error"; };
</script>
"""
ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send("echo: " + message)
async def main():
    async with serve(echo, "0.0.0.0", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
"""


def shot(page, name: str) -> None:
    _shot(page, f"preview-{name}")


def cli_ok(live, *args: str, stdin: str | None = None) -> str:
    return live.cli(*args, input=stdin, check=True).stdout


def test_signed_link_page_websocket_echo_and_revoke(live, page, tmp_path):
    email = add_user(live, "pia")
    sandbox_id = live.new_sandbox("--timeout", "900")
    web, ws = free_port(), free_port()
    cli_ok(live, "sandbox", "file", "write", sandbox_id, "index.html", stdin=INDEX)
    cli_ok(live, "sandbox", "file", "write", sandbox_id, "echo.py", stdin=ECHO)
    cli_ok(live, "sandbox", "exec", sandbox_id, "--background", "--shell",
           f"python3 -m http.server {web} --bind 0.0.0.0")  # fmt: skip
    cli_ok(live, "sandbox", "exec", sandbox_id, "--background", "--shell",
           f"{live.sandbox_python(sandbox_id)} echo.py {ws}")  # fmt: skip
    # The WebSocket link comes from the API; the page link from the console form below.
    ws_url = json.loads(
        cli_ok(live, "sandbox", "preview-url", "create", sandbox_id, str(ws), "--wait", "--json")
    )["websocket_url"]
    cli_ok(live, "sandbox", "url", sandbox_id, str(web), "--wait")

    # Sign in and create the signed link in the console.
    sign_in(page, live, email)
    page.goto(live.url + f"/t/pia/p/main/sandboxes/{sandbox_id}/previews/")
    page.fill("#grant-form input[name=port]", str(web))
    page.select_option("#grant-form select[name=expires]", "900")
    page.click("#grant-form button:has-text('Create')")
    page.wait_for_selector("#issued-link")
    link = page.inner_text("#issued-link").strip()
    grant_id = re.search(r"Signed link (pvg_[a-z0-9]+)", page.inner_text("#grant-create")).group(1)
    assert "edge_token=" in link
    shot(page, "01-link-created")

    # Open the link: 303 + cookie, then the sandbox's page whose WebSocket echoes.
    app = page.context.new_page()
    app.goto(link + "&ws=" + quote(ws_url, safe=""))
    app.wait_for_selector("text=Hello from the sandbox")
    assert set(parse_qs(urlsplit(app.url).query)) == {"ws"}  # the 303 dropped edge_token
    app.wait_for_selector("#echo:has-text('echo: ping from the browser')", timeout=15_000)
    shot(app, "02-sandbox-page-with-echo")

    # The console shows the use, then revoke it in one click.
    page.wait_for_selector(f"#grant-{grant_id}[data-status=active]")
    page.locator(f"#grant-{grant_id} >> text=Revoke").click()
    page.wait_for_selector(f"#grant-{grant_id}[data-status=revoked]")
    shot(page, "03-revoked-in-console")

    app.reload()
    app.wait_for_selector("text=/revoked/i", timeout=10_000)
    assert "Hello from the sandbox" not in app.content()
    shot(app, "04-revoked-page")
