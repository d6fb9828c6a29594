from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from console.actor import Actor
from console.audit.service import record
from console.models import AuditEvent

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def events(team, owner, member, other_team):
    by_owner, by_member = Actor.person(owner), Actor.person(member)
    record("apikey.create", team=team, actor=by_owner, target_type="api_key", target_id="key_a")
    record("apikey.revoke", team=team, actor=by_member, target_type="api_key", target_id="key_b")
    old = record("member.remove", team=team, actor=by_owner, target_type="user", target_id="x")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    record("apikey.create", team=other_team, actor_label="someone", target_id="key_secret")


def test_list_shows_only_this_team(viewer_client, events):
    response = viewer_client.get("/t/acme/audit/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "key_a" in body and "key_b" in body and "key_secret" not in body


def test_filters(viewer_client, events):
    by_action = viewer_client.get("/t/acme/audit/?action=apikey.revoke").content.decode()
    assert "key_b" in by_action and "key_a" not in by_action
    by_actor = viewer_client.get("/t/acme/audit/?actor=bob").content.decode()
    assert "key_b" in by_actor and "key_a" not in by_actor
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    recent = viewer_client.get(f"/t/acme/audit/?since={since}").content.decode()
    assert "key_a" in recent and "user</span> <code>x<" not in recent
    until = (timezone.now() - timedelta(days=5)).date().isoformat()
    older = viewer_client.get(f"/t/acme/audit/?until={until}").content.decode()
    assert "key_a" not in older and "member.remove</code>" in older


def test_htmx_gets_table_fragment(viewer_client, events):
    response = viewer_client.get("/t/acme/audit/?action=apikey.create", **HX)
    assert response.content.decode().lstrip().startswith('<section id="audit-table"')


def test_pagination_keeps_filters(viewer_client, team, owner):
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(team=team, actor=owner, actor_label="alice", action="apikey.create")
            for _ in range(60)
        ]
    )
    first = viewer_client.get("/t/acme/audit/?action=apikey.create").content.decode()
    older = re.search(r'href="\?(action=apikey\.create&amp;after=[\w-]+)"', first)
    assert first.count('<code class="action">') == 50 and older
    second = viewer_client.get("/t/acme/audit/?" + older.group(1).replace("&amp;", "&"))
    assert second.content.decode().count('<code class="action">') == 10
    assert 'rel="prev"' in second.content.decode() and 'rel="next"' not in second.content.decode()


def test_actor_is_a_prefix_and_actions_a_fixed_list(viewer_client, events):
    assert "key_b" not in viewer_client.get("/t/acme/audit/?actor=ob").content.decode()
    refused = viewer_client.get("/t/acme/audit/?action=DROP").content.decode()
    assert "Select a valid choice" in refused and "key_a" not in refused


def test_unknown_action_is_refused_when_recorded(team):
    with pytest.raises(ValueError):
        record("apikey.made_up", team=team)


def test_foreign_cursor_is_400(viewer_client, events):
    assert viewer_client.get("/t/acme/audit/?after=bm9wZQ").status_code == 400


def test_other_team_is_404(member_client, other_team):
    assert member_client.get("/t/other/audit/").status_code == 404
