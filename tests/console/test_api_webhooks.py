"""/v1/lifecycle/webhooks through Django's test client, and the delivery job run in
process against a real receiver on loopback: shapes, refusals (SSRF, secrets, other
projects, read-only keys), secret at rest, back-off, dead letter, auto-disable."""

from __future__ import annotations

import json
import logging

import pytest
from django.utils import timezone
from nullspace.types import (
    LifecycleWebhookDeliveryDetail,
    LifecycleWebhookDeliveryInfo,
    LifecycleWebhookInfo,
)

from console.jobs import queue
from console.jobs.worker import run_job
from console.models import AuditEvent, Delivery, Job, Operation, Webhook
from console.sandboxes.lifecycle import record_event
from console.webhooks import service
from console.webhooks.secrets import new_signing_secret
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db

BASE = "/v1/lifecycle/webhooks"


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_RETRY_BASE_MS = 10


@pytest.fixture
def receiver():
    made = Receiver(secret=new_signing_secret(), fail_first=2).start()
    yield made
    made.stop()


def _create(api, url: str, secret: str, **extra):
    body = {"url": url, "operations": ["create"], "signing_secret": secret, **extra}
    return api.post(BASE, json.dumps(body), content_type="application/json")


def drain(limit: int = 50) -> int:
    """Run due jobs the way a worker does, making retries due at once."""
    ran = 0
    while ran < limit:
        Job.objects.filter(unique_key__isnull=True).update(run_after=timezone.now())
        job = queue.claim("test-worker")
        if job is None:
            return ran
        run_job(job, "test-worker")
        ran += 1
    return ran


def test_crud_shapes_match_the_clients_dataclasses(api, allow_loopback, receiver):
    created = _create(api, receiver.url, receiver.secret)
    assert created.status_code == 201
    info = LifecycleWebhookInfo._from_api(created.json())
    assert info.has_signing_secret and info.enabled
    hook = created.json()["id"]
    assert api.get(f"{BASE}/{hook}").json() == created.json()
    assert [h["id"] for h in api.get(BASE).json()] == [hook]
    patched = api.patch(
        f"{BASE}/{hook}",
        json.dumps({"operations": ["destroy", "fork"], "enabled": False}),
        content_type="application/json",
    )
    assert patched.status_code == 200
    assert patched.json()["operations"] == ["destroy", "fork"]
    assert patched.json()["enabled"] is False
    assert api.delete(f"{BASE}/{hook}").status_code == 204
    assert api.get(f"{BASE}/{hook}").status_code == 404


def test_the_secret_is_encrypted_at_rest_never_returned_nor_logged(
    api, allow_loopback, receiver, caplog
):
    caplog.set_level(logging.DEBUG)
    created = _create(api, receiver.url, receiver.secret)
    row = Webhook.objects.get(public_id=created.json()["id"])
    assert receiver.secret not in row.secret_encrypted
    assert receiver.secret.removeprefix("whsec_") not in row.secret_encrypted
    assert receiver.secret not in created.content.decode()
    assert receiver.secret not in caplog.text
    audits = AuditEvent.objects.filter(action="webhook.created")
    assert audits.count() == 1 and receiver.secret not in json.dumps(audits[0].metadata)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_targets_on_internal_addresses_are_refused(api, url):
    refused = _create(api, url, new_signing_secret())
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_request"
    assert "public addresses only" in refused.json()["error"]
    assert not Webhook.objects.exists()


def test_an_update_to_an_internal_address_is_refused(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    hook = _create(api, "http://127.0.0.1:9/x", new_signing_secret()).json()["id"]
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    refused = api.patch(
        f"{BASE}/{hook}", json.dumps({"url": "http://10.0.0.1/x"}), content_type="application/json"
    )
    assert refused.status_code == 400 and "public addresses only" in refused.json()["error"]
    assert Webhook.objects.get(public_id=hook).url == "http://127.0.0.1:9/x"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"url": "ftp://example.com/x"}, "https://"),
        ({"url": "http://user:pw@example.com/x"}, "credentials"),
        ({"operations": []}, "non-empty"),
        ({"operations": ["explode"]}, "Unknown operation"),
        ({"signing_secret": "not-a-whsec"}, "whsec_"),
        ({"signing_secret": "whsec_c2hvcnQ="}, "bytes of key"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": "red"}, "Unknown field"),
    ],
)
def test_bad_input_is_a_clear_400(api, allow_loopback, body, needle):
    full = {
        "url": "http://127.0.0.1:9/x",
        "operations": ["create"],
        "signing_secret": new_signing_secret(),
        **body,
    }
    refused = api.post(BASE, json.dumps(full), content_type="application/json")
    assert refused.status_code == 400, refused.content
    assert needle in refused.json()["error"]
    assert not Webhook.objects.exists()


def test_other_projects_webhooks_are_not_found(api, client, other_api_key, allow_loopback):
    raw, _ = other_api_key
    theirs = client.post(
        BASE,
        json.dumps(
            {
                "url": "http://127.0.0.1:9/x",
                "operations": ["create"],
                "signing_secret": new_signing_secret(),
            }
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    ).json()["id"]
    for method, path in [
        ("get", f"{BASE}/{theirs}"),
        ("patch", f"{BASE}/{theirs}"),
        ("delete", f"{BASE}/{theirs}"),
        ("get", f"{BASE}/{theirs}/deliveries"),
        ("get", f"{BASE}/{theirs}/deliveries/del_x"),
    ]:
        if method == "get":
            answer = api.get(path)
        else:
            answer = getattr(api, method)(path, "{}", content_type="application/json")
        assert answer.status_code == 404 and answer.json()["code"] == "webhook_not_found"
    assert api.get(BASE).json() == []


def test_read_only_keys_cannot_change_webhooks(client, read_key):
    raw, _ = read_key
    refused = client.post(
        BASE, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert refused.status_code == 403
    assert client.get(BASE, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def test_delivery_fails_twice_then_succeeds_with_three_attempts_logged(
    api, project, allow_loopback, receiver
):
    hook = _create(api, receiver.url, receiver.secret).json()["id"]
    record_event(project, Operation.CREATE, sandbox_id="sb_abc")
    record_event(project, Operation.DESTROY, sandbox_id="sb_abc")  # not subscribed
    assert drain() == 3
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert all(r.verified for r in receiver.received)
    assert len({r.message_id for r in receiver.received}) == 1  # one id across retries
    listed = api.get(f"{BASE}/{hook}/deliveries").json()
    assert len(listed) == 1
    info = LifecycleWebhookDeliveryInfo._from_api(listed[0])
    assert info.attempt_count == 3 and info.delivery_status.value == "succeeded"
    detail = api.get(f"{BASE}/{hook}/deliveries/{info.id}").json()
    parsed = LifecycleWebhookDeliveryDetail._from_api(detail)
    assert [a.response_status for a in parsed.attempts] == [500, 500, 200]
    assert parsed.attempts[0].error_code == "http_status"
    hook_info = api.get(f"{BASE}/{hook}").json()
    assert hook_info["last_delivery_status"] == "succeeded"
    assert not Job.objects.filter(unique_key__isnull=True).exists()


def test_retries_back_off_exponentially_until_dead_letter(project, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_RETRY_BASE_MS = 1000
    receiver.fail_first = 100
    webhook = service.create_webhook(
        project, url=receiver.url, operations=["create"], signing_secret=receiver.secret
    )
    record_event(project, Operation.CREATE, sandbox_id="sb_abc")
    gaps = []
    for _ in range(4):
        job = queue.claim("w")
        assert job is not None
        before = timezone.now()
        run_job(job, "w")
        delivery = Delivery.objects.get()
        if delivery.next_attempt_at:
            gaps.append((delivery.next_attempt_at - before).total_seconds())
            Job.objects.filter(unique_key__isnull=True).update(run_after=timezone.now())
    assert [round(g) for g in gaps] == [1, 2, 4]
    delivery = Delivery.objects.get()
    assert delivery.delivery_status == "dead_letter" and delivery.attempt_count == 4
    assert delivery.last_response_status == 500 and delivery.next_attempt_at is None
    webhook.refresh_from_db()
    assert webhook.consecutive_failures == 1 and webhook.enabled


def test_a_failing_webhook_is_disabled_with_an_audit_entry(project, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    receiver.fail_first = 100
    webhook = service.create_webhook(
        project, url=receiver.url, operations=["create"], signing_secret=receiver.secret
    )
    for n in range(4):
        record_event(project, Operation.CREATE, sandbox_id=f"sb_{n}")
    drain()
    webhook.refresh_from_db()
    assert webhook.enabled is False and "3 deliveries in a row" in webhook.disabled_reason
    # The fourth delivery found the webhook disabled and was not sent.
    assert len(receiver.received) == 3
    audit = AuditEvent.objects.get(action="webhook.auto_disabled")
    assert audit.target_id == webhook.public_id and audit.team == project.team
    # Enabling it again starts the count afresh.
    service.update_webhook(webhook, {"enabled": True})
    webhook.refresh_from_db()
    assert webhook.consecutive_failures == 0 and webhook.disabled_reason == ""


def test_the_target_is_checked_again_at_delivery_time(project, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    service.create_webhook(
        project, url=receiver.url, operations=["create"], signing_secret=receiver.secret
    )
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # e.g. DNS now answers a private address
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    record_event(project, Operation.CREATE, sandbox_id="sb_abc")
    drain()
    assert receiver.received == []
    attempt = Delivery.objects.get().attempts.get()
    assert attempt.error_code == "target_refused" and attempt.response_status is None


def test_redirects_are_not_followed(project, settings):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
        settings.WEBHOOK_MAX_ATTEMPTS = 1
        service.create_webhook(
            project,
            url=f"http://127.0.0.1:{server.server_address[1]}/in",
            operations=["create"],
            signing_secret=new_signing_secret(),
        )
        record_event(project, Operation.CREATE, sandbox_id="sb_abc")
        drain()
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/in"]
    delivery = Delivery.objects.get()
    assert delivery.delivery_status == "dead_letter" and delivery.last_response_status == 307


def test_a_test_event_is_delivered_and_marked(project, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver.fail_first = 0
    webhook = service.create_webhook(
        project, url=receiver.url, operations=["destroy"], signing_secret=receiver.secret
    )
    service.send_test_event(webhook)
    drain()
    [got] = receiver.received
    assert got.verified and got.body["data"]["metadata"] == {"test": True}
    assert got.body["type"] == "lifecycle.destroy"
    assert Delivery.objects.get().is_test


def test_a_slow_receiver_times_out_within_bounds(project, settings, monkeypatch):
    import socket

    from console.webhooks import client

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (kernel backlog) and never answers
    monkeypatch.setattr(client, "TOTAL_TIMEOUT", 0.5)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    try:
        service.create_webhook(
            project,
            url=f"http://127.0.0.1:{listener.getsockname()[1]}/slow",
            operations=["create"],
            signing_secret=new_signing_secret(),
        )
        record_event(project, Operation.CREATE, sandbox_id="sb_abc")
        drain()
    finally:
        listener.close()
    attempt = Delivery.objects.get().attempts.get()
    assert attempt.error_code == "timeout" and attempt.duration_ms < 2000


def test_deliveries_page_bounds(api, allow_loopback, receiver):
    hook = _create(api, receiver.url, receiver.secret).json()["id"]
    assert api.get(f"{BASE}/{hook}/deliveries?limit=0").status_code == 400
    assert api.get(f"{BASE}/{hook}/deliveries?limit=201").status_code == 400
    assert api.get(f"{BASE}/{hook}/deliveries?offset=-1").status_code == 400


def test_operations_the_client_cannot_parse_are_not_offered(api, allow_loopback):
    refused = _create(api, "http://127.0.0.1:9/x", new_signing_secret(), operations=["oom"])
    assert refused.status_code == 400 and "Unknown operation" in refused.json()["error"]


def test_only_outcomes_are_delivered_not_requests(project, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    service.create_webhook(
        project,
        url="http://127.0.0.1:9/x",
        operations=["create"],
        signing_secret=new_signing_secret(),
    )
    record_event(project, Operation.CREATE, status="requested", sandbox_id="sb_abc")
    assert not Delivery.objects.exists()
    record_event(project, Operation.CREATE, status="failed", sandbox_id="sb_abc")
    assert Delivery.objects.get().status == "failed"
