"""Preview access in the audit log: created, first use (client IP and user agent,
written once, by the batch flush and not the request), revoked, expired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from console.actor import SYSTEM
from console.models import AuditEvent, PreviewGrant
from console.previews import service as previews
from gateway import accounting
from tests.gateway.test_http import open_request, read_all

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def _actions(grant_id: str) -> list[str]:
    rows = AuditEvent.objects.filter(target_type="preview_grant", target_id=grant_id)
    return list(rows.order_by("created_at", "pk").values_list("action", flat=True))


async def _visit(sandbox, cookie: bytes, agent: bytes, client=("198.51.100.7", 5555)) -> int:
    comm = open_request(sandbox, "/echo", cookie, headers=[(b"user-agent", agent)], client=client)
    await comm.send_input({"type": "http.request", "body": b""})
    start, _ = await read_all(comm)
    return start["status"]


async def test_first_use_is_audited_once_with_ip_and_user_agent(routed, grant):
    from tests.gateway.test_http import http

    row, raw = grant
    bootstrap = await http(routed, f"/?edge_token={raw['http_port']}").get_response()
    cookie = dict(bootstrap["headers"])[b"set-cookie"].split(b";")[0]
    accounting._pending.clear()  # the bootstrap had no client address; start from a visit
    assert await _visit(routed, cookie, b"Mozilla/5.0 (first)") == 200
    # Nothing is written on the request path.
    assert await db(_actions)(row.public_id) == ["preview_grant.created"]
    await db(accounting.flush)()
    assert await db(_actions)(row.public_id) == [
        "preview_grant.created",
        "preview_grant.first_use",
    ]
    first = await db(AuditEvent.objects.get)(action="preview_grant.first_use")
    assert first.ip == "198.51.100.7"
    assert first.metadata["user_agent"] == "Mozilla/5.0 (first)"
    assert first.metadata["transport"] == "http" and first.metadata["port"] == row.port

    # Later uses, in this process and in another one (empty memory): no second row.
    assert await _visit(routed, cookie, b"other", client=("203.0.113.9", 1)) == 200
    await db(accounting.flush)()
    accounting._first_use_logged.clear()
    assert await _visit(routed, cookie, b"third", client=("203.0.113.9", 1)) == 200
    await db(accounting.flush)()
    assert await db(AuditEvent.objects.filter(action="preview_grant.first_use").count)() == 1

    await db(previews.revoke_grant)(await db(PreviewGrant.objects.get)(pk=row.pk), actor=SYSTEM)
    assert (await db(_actions)(row.public_id))[-1] == "preview_grant.revoked"


def test_expiry_is_audited_once_and_not_for_revoked_grants(sandbox):
    ran_out, _ = previews.create_grant(sandbox, 3000, expires_in_seconds=600, actor=SYSTEM)
    revoked, _ = previews.create_grant(sandbox, 3001, expires_in_seconds=600, actor=SYSTEM)
    previews.revoke_grant(revoked, actor=SYSTEM)
    PreviewGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert previews.audit_expired_grants() == 1
    assert previews.audit_expired_grants() == 0  # once
    assert _actions(ran_out.public_id) == ["preview_grant.created", "preview_grant.expired"]
    assert "preview_grant.expired" not in _actions(revoked.public_id)
