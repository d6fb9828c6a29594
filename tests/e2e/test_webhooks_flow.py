"""Webhooks in a real browser: create one (the generated secret shown once), send a test
event to a real receiver on loopback that verifies the signature with that secret, watch
the delivery succeed in the log, disable and delete it. Screenshots in test-artifacts/."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import add_user, needs_chromium, shot, sign_in
from tests.live import start_live_server
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture
def live(tmp_path):
    server = start_live_server(tmp_path, WEBHOOK_ALLOW_PRIVATE_TARGETS="1")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def receiver():
    made = Receiver(secret="").start()
    yield made
    made.stop()


def test_webhooks_in_the_console(live, page, receiver):
    sign_in(page, live, add_user(live, "hana"))
    page.wait_for_selector("h1")
    page.click(".sidebar >> text=Webhooks")
    page.wait_for_selector("h1:has-text('Webhooks')")
    page.fill("#webhooks input[name=url]", receiver.url)
    page.click("button:has-text('Create webhook')")
    secret = page.input_value("#new-secret-value")
    assert secret.startswith("whsec_")
    receiver.secret = secret
    shot(page, "webhooks-01-created")
    page.reload()
    assert secret not in page.content()

    page.click("#webhook-table a >> nth=0")
    page.wait_for_selector("h1:has-text('Webhook')")
    page.click("#send-test")
    page.wait_for_selector("#delivery-table tr[data-status=succeeded]", timeout=20_000)
    [got] = receiver.received
    assert got.verified and got.body["data"]["metadata"] == {"test": True}
    page.click("#delivery-table summary")
    assert '"test": true' in page.inner_text("#delivery-table pre")
    shot(page, "webhooks-02-delivery")

    page.click("button:has-text('Disable')")
    page.wait_for_selector("text=disabled")
    page.click(".sidebar >> text=Webhooks")
    page.wait_for_selector("#webhook-table tr[data-enabled=false]")
    page.click("#webhook-table >> text=Delete")
    page.wait_for_selector("text=No webhooks yet")
    shot(page, "webhooks-03-deleted")
