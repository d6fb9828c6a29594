"""The real `nullspace lifecycle webhooks` CLI against a live server (daphne + worker),
delivering to a real receiver on loopback that checks every signature itself."""

from __future__ import annotations

import json

import pytest

from console.webhooks.secrets import new_signing_secret
from tests.live import remove_tree, start_live_server
from tests.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def hooks_live(tmp_path_factory):
    # Loopback receivers are allowed here (the SSRF guard is tested on its own), and
    # retries are fast so three attempts take well under a second.
    server = start_live_server(
        tmp_path_factory.mktemp("hooks"),
        WEBHOOK_ALLOW_PRIVATE_TARGETS="1",
        WEBHOOK_RETRY_BASE_MS="200",
    )
    yield server
    server.stop()
    remove_tree(server.data_dir)


@pytest.fixture
def receiver():
    made = Receiver(secret=new_signing_secret(), fail_first=2).start()
    yield made
    made.stop()


def _json(result) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_webhooks_line_of_the_cli(hooks_live, receiver):
    live = hooks_live
    created = _json(
        live.cli(
            "lifecycle", "webhooks", "create",
            "--url", receiver.url,
            "--operation", "create",
            "--operation", "destroy",
            "--signing-secret", receiver.secret,
        )
    )  # fmt: skip
    hook = created["id"]
    assert hook.startswith("wh_")
    assert created["enabled"] is True and created["has_signing_secret"] is True
    assert created["operations"] == ["create", "destroy"]
    assert receiver.secret not in json.dumps(created)

    listed = _json(live.cli("lifecycle", "webhooks", "list"))
    assert [h["id"] for h in listed] == [hook]
    assert receiver.secret not in json.dumps(listed)
    assert _json(live.cli("lifecycle", "webhooks", "get", hook))["url"] == receiver.url

    # A sandbox created and killed: two events, each delivered after two failures.
    sandbox = live.new_sandbox()
    live.cli("sandbox", "kill", sandbox, check=True)
    seen = receiver.wait_for(lambda got: sum(r.status == 200 for r in got) == 2)
    assert all(r.verified for r in seen), "every request carries a valid signature"
    assert len(seen) == 6
    ops = sorted(r.body["data"]["operation"] for r in seen if r.status == 200)
    assert ops == ["create", "destroy"]
    assert {r.body["data"]["sandbox_id"] for r in seen} == {sandbox}

    deliveries = _json(live.cli("lifecycle", "webhooks", "deliveries", hook))
    assert len(deliveries) == 2
    assert {d["operation"] for d in deliveries} == {"create", "destroy"}
    for delivery in deliveries:
        assert delivery["delivery_status"] == "succeeded"
        assert delivery["attempt_count"] == 3
        assert delivery["last_response_status"] == 200
        assert delivery["next_attempt_at"] is None
    assert {d["id"] for d in deliveries} == {r.message_id for r in seen}

    detail = _json(live.cli("lifecycle", "webhooks", "delivery", hook, deliveries[0]["id"]))
    attempts = detail["attempts"]
    assert [a["attempt_number"] for a in attempts] == [1, 2, 3]
    assert [a["response_status"] for a in attempts] == [500, 500, 200]
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert detail["event"]["sandbox_id"] == sandbox
    assert detail["delivery"]["id"] == deliveries[0]["id"]

    # Disabled: a new event gets no delivery.
    updated = _json(live.cli("lifecycle", "webhooks", "update", hook, "--disabled"))
    assert updated["enabled"] is False
    live.cli("sandbox", "kill", live.new_sandbox(), check=True)
    assert len(_json(live.cli("lifecycle", "webhooks", "deliveries", hook))) == 2

    deleted = live.cli("lifecycle", "webhooks", "delete", hook)
    assert deleted.returncode == 0 and f"Deleted lifecycle webhook {hook}" in deleted.stdout
    gone = live.cli("lifecycle", "webhooks", "get", hook)
    assert gone.returncode == 3 and "not found" in gone.stderr.lower()


def test_cli_refusals_are_clear(hooks_live):
    live = hooks_live
    bad_secret = live.cli(
        "lifecycle", "webhooks", "create",
        "--url", "http://127.0.0.1:9/x", "--operation", "create", "--signing-secret", "short",
    )  # fmt: skip
    assert bad_secret.returncode == 2 and "whsec_" in bad_secret.stderr
    missing = live.cli("lifecycle", "webhooks", "deliveries", "wh_doesnotexist")
    assert missing.returncode == 3
