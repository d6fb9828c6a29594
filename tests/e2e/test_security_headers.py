"""The Content-Security-Policy as chromium enforces it: the console's pages work under it
(the `page` fixture fails a test on any violation) and it really forbids inline code."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import add_user, needs_chromium, sign_in

pytestmark = [pytest.mark.e2e, needs_chromium]


def test_the_policy_is_enforced_and_the_console_still_works(live, browser):
    email = add_user(live, "csp")
    context = browser.new_context()
    tab = context.new_page()
    refused: list[str] = []
    tab.on(
        "console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None
    )
    sign_in(tab, live, email)
    response = tab.goto(live.url + "/t/csp/p/main/keys/")
    assert response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    # What the policy is for: injected inline scripts and style attributes do nothing.
    blocked = tab.evaluate(
        """() => {
            const s = document.createElement("script");
            s.textContent = "window.__injected = true";
            document.body.appendChild(s);
            const p = document.createElement("p");
            p.setAttribute("style", "color: rgb(1, 2, 3)");
            document.body.appendChild(p);
            return {injected: window.__injected === true,
                    styled: getComputedStyle(p).color === "rgb(1, 2, 3)"};
        }"""
    )
    assert blocked == {"injected": False, "styled": False}
    assert any("script" in text for text in refused)
    # htmx still works under it: the sidebar's pages load and their fragments swap.
    refused.clear()
    tab.reload()
    tab.fill("input[name=name]", "csp-check")
    tab.click("button:has-text('Create key')")
    tab.wait_for_selector("text=Copy it now")
    tab.focus("#new-key-value")
    assert tab.evaluate("document.activeElement.selectionEnd") > 10  # selected on focus
    assert refused == []
    assert httpx.get(live.url + "/favicon.ico").status_code == 200
    context.close()
