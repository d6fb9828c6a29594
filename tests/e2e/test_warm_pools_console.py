"""The Warm pools page in Debian chromium against a live server whose worker fills pools:
a pool made with the real CLI appears and its ready count climbs with no reload and no
polling (the live socket pushes each change); a checkout is counted; Scale and Drain
work from the page through htmx."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import add_user, needs_chromium, shot, sign_in

pytestmark = [pytest.mark.e2e, needs_chromium]

FILL_MS = 180_000
QUIET_MS = 4000
SETTLE_MS = 2000  # more than static/js/live.js SETTLED_MS


def test_pool_counts_are_pushed_and_actions_work(live, page):
    sign_in(page, live, add_user(live, "wanda"))
    page.goto(f"{live.url}/t/wanda/p/main/warm-pools/")
    page.wait_for_selector("[data-live-socket][data-live-state='open']")
    made = json.loads(
        live.cli(
            "template", "warm-pool", "create", "base", "--name", "ui", "--min-ready", "1",
            "--max-ready", "2", "--json", check=True,
        ).stdout
    )  # fmt: skip
    row = f"#pool-{made['id']}"
    page.wait_for_selector(f"{row}[data-ready='1']", timeout=FILL_MS)

    # Full and nothing happening: the page asks for nothing (once live.js's one refresh
    # after the last burst of changes, SETTLED_MS later, has come and gone).
    page.wait_for_selector(f"{row}[data-warming='0']")
    page.wait_for_timeout(SETTLE_MS)
    seen: list[str] = []
    page.on("request", lambda request: seen.append(urlsplit(request.url).path))
    page.wait_for_timeout(QUIET_MS)
    assert seen == [], f"a quiet page asked for {seen}"

    taken = json.loads(
        live.cli("sandbox", "create", "--warm-pool", made["id"], "--warm-pool-mode", "require",
                 check=True).stdout
    )  # fmt: skip
    assert taken["warm_pool_checkout"]["hit"]
    page.wait_for_selector(f"{row} td:nth-child(6):text-is('1')", timeout=FILL_MS)  # checked out
    page.wait_for_selector(f"{row}[data-ready='1']", timeout=FILL_MS)  # refilled
    shot(page, "warm-pools-01-filled")

    page.fill(f"{row} input[name=min_ready]", "2")
    page.click(f"{row} .scale-form button")
    page.wait_for_selector(f"{row}[data-ready='2']", timeout=FILL_MS)

    page.click(f"{row} button[data-action='drain']")
    page.wait_for_selector(f"{row}[data-state='disabled'][data-ready='0']", timeout=FILL_MS)
    info = json.loads(
        live.cli("template", "warm-pool", "get", made["id"], "--json", check=True).stdout
    )
    assert info["state"] == "disabled" and info["status"]["ready"] == 0
    shot(page, "warm-pools-02-drained")
