"""Browser tests: Debian chromium through Playwright, each test on a live server of its own.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.live import ROOT, start_live_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "a-long-browser-password"

# Every module here: `pytestmark = [pytest.mark.e2e, needs_chromium]`.
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"
)


@pytest.fixture
def live(tmp_path: Path):
    """A fresh server per test (overrides the `cli` modules' one); stopping it destroys
    its sandboxes."""
    server = start_live_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Preview hosts (<port>-<sandbox>.preview.localhost) reach the live server too.
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--host-resolver-rules=MAP *.preview.localhost 127.0.0.1"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """A tab; the test fails if any page broke the Content-Security-Policy (chromium
    reports each refused script, style or connection on the console)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    violations = csp_violations(tab)
    yield tab
    context.close()
    assert not violations, "\n".join(violations)


def csp_violations(tab) -> list[str]:
    """A list that fills with what chromium refused under the Content-Security-Policy."""
    found: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" in message.text:
            found.append(f"{tab.url}: {message.text}")

    tab.on("console", on_console)
    return found


def add_user(live, name: str) -> str:
    """`<name>@example.com` with PASSWORD, owner of team `<name>` with project `main`; the
    live server's CLI key becomes that project's. Returns the email."""
    email = f"{name}@example.com"
    live.api_key = live.manage(
        "bootstrap", "--email", email, "--password", PASSWORD, "--team", name, "--project", "main"
    )
    return email


def sign_in(page, live, email: str) -> None:
    page.goto(live.url + "/signin/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")


def shot(page, name: str) -> None:
    """A full-page screenshot at test-artifacts/<name>.png, taken from the top of the page
    (the sticky top bar would otherwise land mid-page)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
