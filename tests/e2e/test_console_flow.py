"""The console in a real browser (Debian chromium via Playwright) against a live server:
sign up, create a project, create an API key and see it once, invite a member, revoke the key.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, csp_violations, needs_chromium
from tests.e2e.conftest import shot as _shot

pytestmark = [pytest.mark.e2e, needs_chromium]


def shot(page, name: str) -> None:
    _shot(page, f"console-{name}")


def sign_up(page, email: str) -> None:
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign up')")


def test_console_flow(live, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    violations = csp_violations(page)

    # Sign up: lands on the personal team's Default project.
    page.goto(live.url + "/")
    assert "/signin/" in page.url
    shot(page, "01-signin")
    page.click("text=Create an account")
    sign_up(page, "dana@example.com")
    page.wait_for_selector("h1:has-text('Default')")
    shot(page, "02-project")

    # Create a project from the team page (htmx form, then HX-Redirect).
    page.click("text=All projects")
    page.fill("#project-list input[name=name]", "Web app")
    page.click("button:has-text('Create project')")
    page.wait_for_selector("h1:has-text('Web app')")
    assert re.search(r"/t/[\w-]+/p/web-app/$", page.url)

    # Create an API key: the raw key is shown once.
    page.click(".sidebar >> text=API keys")
    page.fill("#api-keys input[name=name]", "ci")
    page.click("button:has-text('Create key')")
    raw = page.input_value("#new-key-value")
    assert raw.startswith("nsk_")
    shot(page, "03-key-created")
    api = httpx.get(live.url + "/v1/keys", headers={"Authorization": f"Bearer {raw}"})
    assert api.status_code == 200 and api.json()[0]["name"] == "ci"
    page.reload()
    assert page.locator("#new-key-value").count() == 0
    assert raw not in page.content()

    # Invite a member: the link is shown once and the copy button copies it.
    page.click(".sidebar >> text=Members")
    page.click("button:has-text('Create invitation link')")
    link = page.input_value("#new-invitation-link")
    assert "/invite/?token=nsi_" in link
    page.click("#invitations button.copy")
    page.wait_for_selector("#invitations button.copy:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == link
    shot(page, "04-invitation")

    # The invitee signs up through the link and joins the team.
    other = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    other.goto(link)
    other.click("text=Create an account")
    sign_up(other, "erin@example.com")
    other.wait_for_selector("h1:has-text('Join')")
    shot(other, "05-accept")
    other.click("button:has-text('Join team')")
    other.wait_for_selector("text=You joined")
    other.context.close()
    page.reload()
    assert page.locator("#member-table >> text=erin@example.com").count() == 1

    # Revoke the key (htmx with hx-confirm): it stops working at once.
    page.click(".sidebar >> text=API keys")
    page.click("#key-table >> text=Revoke")
    page.wait_for_selector("#key-table .badge-revoked")
    shot(page, "06-key-revoked")
    api = httpx.get(live.url + "/v1/keys", headers={"Authorization": f"Bearer {raw}"})
    assert api.status_code == 401 and api.json()["code"] == "unauthorized"

    page.click(".sidebar >> text=Audit log")
    page.wait_for_selector("#audit-table >> text=apikey.revoke")
    shot(page, "07-audit")

    # Delete the project from its settings (hx-confirm, then HX-Redirect to the team page).
    page.click(".switcher summary")
    page.click(".switcher-menu >> text=Web app")
    page.click(".sidebar >> text=Settings")
    page.click("text=Delete project…")
    page.wait_for_selector("h2:has-text('Projects')")
    assert page.locator("#project-list >> text=Web app").count() == 0
    assert page.locator(".flash-success >> text=Project Web app deleted").count() == 1
    context.close()
    assert not violations, "\n".join(violations)
