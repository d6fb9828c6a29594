"""Live parts of console pages are pushed, not polled (issue 15), in Debian chromium against a
live server: an open page sends no request while nothing changes; a kill made with the
real CLI reaches the sandbox page's state badge, and a revoke reaches the preview links
table, each with one fetch of the fragment that changed. The grants table fits 1280 px."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import add_user, needs_chromium, shot, sign_in

pytestmark = [pytest.mark.e2e, needs_chromium]

QUIET_MS = 4000


def requests_seen(page) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(urlsplit(request.url).path))
    return seen


def test_state_badge_and_grants_follow_changes_without_polling(live, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, live, add_user(live, "lena"))
    # A paused sandbox: its page has nothing to sample, so it must be wholly quiet.
    sandbox_id = live.new_sandbox()
    live.cli("sandbox", "pause", sandbox_id, check=True)

    page.goto(f"{live.url}/t/lena/p/main/sandboxes/{sandbox_id}/")
    page.wait_for_selector("#sandbox-status:has-text('Paused')")
    page.wait_for_selector("[data-live-socket][data-live-state='open']")
    seen = requests_seen(page)
    page.wait_for_timeout(QUIET_MS)
    assert seen == [], f"a quiet page asked for {seen}"

    live.cli("sandbox", "kill", sandbox_id, check=True)
    page.wait_for_selector("#sandbox-status:has-text('Destroyed')", timeout=10_000)
    state_fetches = [path for path in seen if path.endswith("/state/")]
    assert 1 <= len(state_fetches) <= 3, seen  # one per lifecycle event, no timer
    page.wait_for_selector("#event-list .event-op:text-is('Destroy')")
    shot(page, "live-01-killed-by-cli")

    # Preview links of a running sandbox: three grants, the page open, one revoked from the CLI.
    sandbox_id = live.new_sandbox()
    made = [
        json.loads(
            live.cli("sandbox", "preview-url", "create", sandbox_id, port, "--json", check=True).stdout
        )["grant"]["id"]
        for port in ("3000", "8080", "5173")
    ]  # fmt: skip
    page.goto(f"{live.url}/t/lena/p/main/previews/")
    page.wait_for_selector(f"#grant-{made[0]}[data-status='active']")
    page.wait_for_selector("[data-live-socket][data-live-state='open']")
    seen = requests_seen(page)
    page.wait_for_timeout(QUIET_MS)
    assert seen == [], f"a quiet grants page asked for {seen}"
    live.cli("sandbox", "preview-url", "revoke", sandbox_id, made[1], check=True)
    page.wait_for_selector(f"#grant-{made[1]}[data-status='revoked']", timeout=10_000)
    assert page.inner_text("#grant-active-count") == "2 active"
    assert 1 <= len([p for p in seen if p.endswith("/previews/table/")]) <= 2, seen

    # Ten columns fit a 1280 px window: nothing scrolls sideways, in the page or the table.
    widths = page.evaluate(
        """() => {
          const wrap = document.querySelector('#grant-table .table-wrap');
          return [document.documentElement.scrollWidth, window.innerWidth,
                  wrap.scrollWidth, wrap.clientWidth];
        }"""
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
    shot(page, "live-02-grants-1280")
    context.close()
