"""Keyset pages (console/paging.py) and how /v1 list routes use them (console/api/listing.py)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from console.models import ApiKey, LifecycleEvent, PreviewGrant, Sandbox, SandboxStatus, Snapshot
from console.paging import BadCursor, Keyset, encode, paginate
from tests import factories

pytestmark = pytest.mark.django_db

KEYSET = Keyset("sandbox", "created_at")


@pytest.fixture
def rows(project):
    """25 sandboxes, in pairs that share a created_at: ties must be broken by id."""
    base = timezone.now() - timedelta(days=1)
    made = [
        Sandbox(project=project, status=SandboxStatus.DESTROYED, created_at=base + timedelta(minutes=i // 2))
        for i in range(25)
    ]  # fmt: skip
    Sandbox.objects.bulk_create(made)
    return Sandbox.objects.filter(project=project)


def walk(rows, limit, **kwargs):
    seen, after = [], None
    while True:
        page = paginate(rows, KEYSET, limit=limit, after=after, **kwargs)
        seen += [s.pk for s in page.items]
        if not page.next_cursor:
            return seen
        after = page.next_cursor


def test_forward_pages_reach_every_row_once_in_order(rows):
    expected = list(rows.order_by("-created_at", "-pk").values_list("pk", flat=True))
    for limit in (1, 2, 7, 25, 100):
        assert walk(rows, limit) == expected
    assert walk(rows, 4, ascending=True) == expected[::-1]


def test_backward_pages_mirror_forward_ones(rows):
    first = paginate(rows, KEYSET, limit=10)
    second = paginate(rows, KEYSET, limit=10, after=first.next_cursor)
    assert first.prev_cursor is None and second.prev_cursor
    back = paginate(rows, KEYSET, limit=10, before=second.prev_cursor)
    assert [s.pk for s in back.items] == [s.pk for s in first.items]
    assert back.prev_cursor is None and back.next_cursor == first.next_cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(json.dumps(["sandbox", "yesterday", 1]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["sandbox", None, None]).encode()).decode(),
        "x" * 600,
    ],
)
def test_a_cursor_not_made_here_is_refused(rows, cursor):
    with pytest.raises(BadCursor):
        paginate(rows, KEYSET, limit=5, after=cursor)


def test_a_cursor_of_another_list_is_refused(rows, project):
    key = factories.make_key(project).key
    with pytest.raises(BadCursor, match="another list"):
        paginate(rows, KEYSET, limit=5, after=encode(Keyset("key", "created_at"), key))


# --- /v1 -----------------------------------------------------------------------------------


def collect(api, url, key="next_token", param="next_token", **query):
    items, token = [], None
    for _ in range(1000):
        answer = api.get(url, {**query, **({param: token} if token else {})})
        assert answer.status_code == 200, answer.content
        body = answer.json()
        items += body.get("items", body.get("events"))
        token = body.get(key)
        if not token:
            return items
    raise AssertionError("paging did not end")


def test_snapshots_unpaged_is_the_whole_list_and_paged_on_request(api, project, settings):
    sandbox = factories.make_sandbox_row(project)
    Snapshot.objects.bulk_create(
        Snapshot(project=project, sandbox=sandbox, sandbox_public_id=sandbox.public_id)
        for _ in range(130)
    )
    whole = api.get("/v1/snapshots").json()
    assert isinstance(whole, list) and len(whole) == 130  # 0.1.9's bare list, not cut short
    paged = collect(api, "/v1/snapshots", limit=7)
    assert [s["id"] for s in paged] == [s["id"] for s in whole]
    settings.LIST_UNPAGED_MAX = 100
    refused = api.get("/v1/snapshots")
    assert refused.status_code == 400 and refused.json()["code"] == "result_too_large"
    assert len(collect(api, "/v1/snapshots", limit=50)) == 130  # pages still reach them all


def test_keys_and_grants_page_to_the_end(api, project, api_key):
    for i in range(30):
        factories.make_key(project, name=f"k{i}")
    keys = collect(api, "/v1/keys", limit=4)
    assert len(keys) == 31 and len({k["id"] for k in keys}) == 31
    assert len(api.get("/v1/keys").json()) == 31
    sandbox = factories.make_sandbox_row(project)
    PreviewGrant.objects.bulk_create(
        PreviewGrant(
            project=project, sandbox=sandbox, port=3000, expires_at=timezone.now() + timedelta(hours=1)
        )
        for _ in range(45)
    )  # fmt: skip
    url = f"/v1/sandboxes/{sandbox.public_id}/preview-urls"
    assert len(collect(api, url, limit=10)) == 45
    whole = api.get(url).json()
    assert len(whole["items"]) == 45 and whole["has_next"] is False


def test_lifecycle_events_page_by_cursor_and_bound_offset(api, project):
    LifecycleEvent.objects.bulk_create(
        LifecycleEvent(project=project, seq=i, operation="create", status="succeeded", sandbox_id="sb_x")
        for i in range(120)
    )  # fmt: skip
    events = collect(api, "/v1/lifecycle/events", key="next_cursor", param="cursor", limit=50)
    assert len(events) == 120 and len({e["id"] for e in events}) == 120
    oldest_first = collect(
        api, "/v1/lifecycle/events", key="next_cursor", param="cursor", limit=33, order="asc"
    )
    assert [e["id"] for e in oldest_first] == [e["id"] for e in events][::-1]
    # The client's offset still works up to the bound, and says where to go on.
    by_offset = api.get("/v1/lifecycle/events", {"offset": 100, "limit": 10}).json()
    assert [e["id"] for e in by_offset["events"]] == [e["id"] for e in events[100:110]]
    assert by_offset["has_more"] and by_offset["next_cursor"]
    too_deep = api.get("/v1/lifecycle/events", {"offset": 10_001})
    assert too_deep.status_code == 400 and "cursor" in too_deep.json()["error"]
    both = api.get("/v1/lifecycle/events", {"offset": 5, "cursor": by_offset["next_cursor"]})
    assert both.status_code == 400


def test_bad_tokens_are_a_clear_400(api, project):
    token = encode(Keyset("key", "created_at"), ApiKey.objects.filter(project=project).first())
    for url, param in (
        ("/v1/sandboxes", "next_token"),
        ("/v1/snapshots", "next_token"),
        ("/v1/keys", "next_token"),
        ("/v1/lifecycle/events", "cursor"),
    ):
        for bad in ("garbage", token if url != "/v1/keys" else "garbage"):
            answer = api.get(url, {param: bad})
            assert answer.status_code == 400, url
            assert answer.json()["code"] == "invalid_request"
