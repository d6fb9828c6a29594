"""The console's webhooks pages and a preview grant's access history page."""

from __future__ import annotations

import logging
import re

import pytest

from console.actor import SYSTEM
from console.models import AuditEvent, Delivery, Job, Webhook
from console.previews import service as previews
from console.webhooks import service
from console.webhooks.secrets import decrypt, new_signing_secret
from tests import factories

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
BASE = "/t/acme/p/web/webhooks/"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def hook(project):
    return service.create_webhook(
        project,
        url="http://127.0.0.1:9/in",
        operations=["create", "destroy"],
        signing_secret=new_signing_secret(),
    )


def test_create_shows_a_generated_secret_once(member_client, project, caplog):
    caplog.set_level(logging.DEBUG)
    response = member_client.post(
        BASE + "new/", {"url": "http://127.0.0.1:9/in", "operations": ["create", "fork"]}, **HX
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("max-age=0")
    secret = re.search(r'value="(whsec_[^"]+)"', response.content.decode()).group(1)
    webhook = Webhook.objects.get(project=project)
    assert webhook.operations == ["create", "fork"]
    assert decrypt(webhook.secret_encrypted) == secret
    assert secret not in webhook.secret_encrypted
    assert secret not in str(list(AuditEvent.objects.values()))
    assert secret not in caplog.text
    again = member_client.get(BASE)
    assert webhook.public_id in again.content.decode() and secret not in again.content.decode()


def test_an_internal_url_is_a_form_error(member_client, project, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = member_client.post(
        BASE + "new/", {"url": "http://169.254.169.254/", "operations": ["create"]}, **HX
    )
    assert response.status_code == 200
    assert "public addresses only" in response.content.decode()
    assert not Webhook.objects.exists()


def test_list_is_a_full_page_or_a_fragment(viewer_client, hook):
    page = viewer_client.get(BASE)
    assert page.status_code == 200 and "<html" in page.content.decode()
    assert hook.public_id in page.content.decode()
    assert "Create webhook" not in page.content.decode()  # viewers do not manage
    fragment = viewer_client.get(BASE, **HX).content.decode()
    assert fragment.lstrip().startswith('<section id="webhooks"') and "<html" not in fragment


def test_toggle_and_delete(member_client, hook):
    member_client.post(f"{BASE}{hook.public_id}/toggle/", **HX)
    hook.refresh_from_db()
    assert hook.enabled is False
    member_client.post(f"{BASE}{hook.public_id}/toggle/")
    hook.refresh_from_db()
    assert hook.enabled is True
    confirm = member_client.get(f"{BASE}{hook.public_id}/delete/")
    assert confirm.status_code == 200 and "Delete webhook" in confirm.content.decode()
    assert Webhook.objects.exists()
    gone = member_client.post(f"{BASE}{hook.public_id}/delete/")
    assert gone.status_code == 302 and not Webhook.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"webhook.created", "webhook.updated", "webhook.deleted"} <= actions


def test_send_a_test_event_and_see_the_delivery_with_its_payload(member_client, hook):
    response = member_client.post(f"{BASE}{hook.public_id}/test/", **HX)
    assert response.status_code == 200
    delivery = Delivery.objects.get(webhook=hook)
    assert delivery.is_test and Job.objects.filter(kind="webhook.deliver").count() == 1
    body = response.content.decode()
    assert delivery.public_id in body and "queued" in body
    assert "&quot;test&quot;: true" in body  # the payload as sent
    assert 'hx-trigger="every 2s"' in body  # refreshes while the delivery is pending
    page = member_client.get(f"{BASE}{hook.public_id}/")
    assert page.status_code == 200 and "Send a test event" in page.content.decode()


def test_viewers_and_outsiders_are_refused(viewer_client, outsider_client, hook):
    assert viewer_client.get(f"{BASE}{hook.public_id}/").status_code == 200
    for action in ("toggle", "delete", "test"):
        assert viewer_client.post(f"{BASE}{hook.public_id}/{action}/").status_code == 403
    assert viewer_client.post(BASE + "new/", {"url": "http://127.0.0.1:9/"}).status_code == 403
    assert outsider_client.get(BASE).status_code == 404
    assert outsider_client.get(f"{BASE}{hook.public_id}/").status_code == 404


def test_another_projects_webhook_is_not_found(member_client, other_project):
    theirs = service.create_webhook(
        other_project,
        url="http://127.0.0.1:9/in",
        operations=["create"],
        signing_secret=new_signing_secret(),
    )
    assert member_client.get(f"{BASE}{theirs.public_id}/").status_code == 404
    assert member_client.post(f"{BASE}{theirs.public_id}/toggle/").status_code == 404


def test_csrf_is_enforced(csrf_client, hook):
    assert csrf_client.post(f"{BASE}{hook.public_id}/toggle/").status_code == 403


def test_a_grants_page_lists_its_access_history(viewer_client, project):
    sandbox = factories.make_sandbox_row(project)
    grant, _ = previews.create_grant(sandbox, 3000, expires_in_seconds=600, actor=SYSTEM)
    AuditEvent.objects.create(
        team=project.team,
        action="preview_grant.first_use",
        actor_label="preview visitor",
        target_type="preview_grant",
        target_id=grant.public_id,
        ip="198.51.100.7",
        metadata={"user_agent": "Mozilla/5.0 (probe)"},
    )
    previews.revoke_grant(grant, actor=SYSTEM)
    page = viewer_client.get(f"/t/acme/p/web/previews/{grant.public_id}/")
    body = page.content.decode()
    assert page.status_code == 200
    rows = re.findall(r'data-action="([^"]+)"', body)
    assert rows == ["preview_grant.created", "preview_grant.first_use", "preview_grant.revoked"]
    assert "198.51.100.7" in body and "Mozilla/5.0 (probe)" in body
    listing = viewer_client.get("/t/acme/p/web/previews/").content.decode()
    assert f"/t/acme/p/web/previews/{grant.public_id}/" in listing
