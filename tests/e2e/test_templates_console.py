"""Template pages in a real browser (Debian chromium via Playwright) against a live server:
the build form starts a declarative build whose page streams its log as lines are
printed (no reload), one phase per step, with its cache entries; the template's page
lists the build with its tags; the list shows its status. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import add_user, needs_chromium, shot, sign_in

pytestmark = [pytest.mark.e2e, needs_chromium]


def test_build_form_and_live_build_log(live, page):
    email = add_user(live, "tess")
    sign_in(page, live, email)
    page.goto(f"{live.url}/t/tess/p/main/templates/")
    page.wait_for_selector("#templates-empty")
    assert "nullspace/base" in page.inner_text("#template-table")
    page.click("#template-new")
    nonce = uuid.uuid4().hex[:8]
    page.fill("input[name=name]", "browser-demo")
    page.select_option("select[name=base_image]", "debian:bookworm")
    page.fill(
        "textarea[name=run]",
        f"for i in 1 2 3 4 5 6; do echo tick-$i-{nonce}; sleep 0.7; done\necho second-step",
    )
    page.fill("textarea[name=envs]", "MODE=browser")
    page.click("#template-build-form button[type=submit]")
    page.wait_for_url("**/templates/builds/tb_*/")
    # Lines printed after the page loaded appear without a reload.
    page.wait_for_selector(f"#build-log:has-text('tick-2-{nonce}')", timeout=120_000)
    shot(page, "template-build-live")
    page.wait_for_selector("#build-status.tpl-ready", timeout=120_000)
    page.wait_for_selector("#build-log:has-text('second-step')")
    boxes = page.locator("#build-log .build-phase")
    phases = [boxes.nth(i).get_attribute("data-phase") for i in range(boxes.count())]
    assert "step 1/2: run" in phases and "step 2/2: run" in phases
    log = page.inner_text("#build-log")
    ticks = [
        line.split()[-1]
        for line in log.splitlines()
        if line.split()[-1:] and line.split()[-1].startswith("tick-")
    ]
    assert ticks == [f"tick-{i}-{nonce}" for i in range(1, 7)]
    assert "cache miss" in log and "cache stored" in log
    assert page.locator("#build-log .kind-cache").count() >= 2
    shot(page, "template-build-done")

    page.click("a:has-text('browser-demo')")
    page.wait_for_selector("#template-builds")
    assert "ready" in page.inner_text("#template-builds")
    assert "default" in page.inner_text("#template-tags")
    shot(page, "template-detail")
    page.goto(f"{live.url}/t/tess/p/main/templates/")
    assert "browser-demo" in page.inner_text("#template-table")
    assert "ready" in page.inner_text("#template-table")
