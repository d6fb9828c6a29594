from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.keys.service import rotate_api_key
from console.models import ApiKey, AuditEvent
from tests.factories import make_key

pytestmark = pytest.mark.django_db

LIST_KEYS = {
    "id",
    "prefix",
    "is_active",
    "name",
    "scope",
    "created_at",
    "last_used_at",
    "expires_at",
    "revoked_at",
    "rotation_parent_key_id",
}


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_create_returns_key_once_and_it_works(client, api_key, project, caplog):
    caplog.set_level(logging.DEBUG)
    raw, _ = api_key
    response = client.post(
        "/v1/keys", {"name": "ci", "scope": "read"}, content_type="application/json", **bearer(raw)
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "key", "prefix", "name", "scope", "expires_at"}
    assert body["id"].startswith("key_") and body["key"].startswith("nsk_")
    assert body["key"].startswith(body["prefix"]) and body["scope"] == "read"
    row = ApiKey.objects.get(public_id=body["id"])
    assert row.project == project
    assert body["key"] not in str(ApiKey.objects.filter(pk=row.pk).values().get())
    listed = client.get("/v1/keys", **bearer(body["key"]))
    assert listed.status_code == 200
    assert body["key"] not in listed.content.decode()
    assert body["key"] not in caplog.text and raw not in caplog.text
    assert AuditEvent.objects.filter(action="apikey.create", target_id=body["id"]).exists()


def test_list_is_bare_array_of_own_project(api, api_key, other_api_key):
    response = api.get("/v1/keys")
    assert response.status_code == 200
    items = response.json()
    assert isinstance(items, list)
    assert [item["id"] for item in items] == [api_key[1].public_id]
    assert set(items[0]) == LIST_KEYS
    assert items[0]["is_active"] is True and items[0]["created_at"].endswith("Z")


def test_read_only_key_cannot_write(client, read_key, api_key):
    raw, _ = read_key
    assert client.get("/v1/keys", **bearer(raw)).status_code == 200
    for method, path in [
        ("post", "/v1/keys"),
        ("post", "/v1/keys/default"),
        ("delete", f"/v1/keys/{api_key[1].public_id}"),
        ("post", f"/v1/keys/{api_key[1].public_id}/rotate"),
    ]:
        response = getattr(client, method)(path, content_type="application/json", **bearer(raw))
        assert response.status_code == 403, path
        assert response.json()["code"] == "permission_denied"
    assert ApiKey.objects.count() == 2


def test_default_is_idempotent(api):
    first = api.post("/v1/keys/default", content_type="application/json")
    assert first.status_code == 201
    assert first.json()["created"] is True and first.json()["key"].startswith("nsk_")
    second = api.post("/v1/keys/default", content_type="application/json")
    assert second.status_code == 200
    assert second.json()["created"] is False and "key" not in second.json()
    assert second.json()["id"] == first.json()["id"]


def test_delete_revokes_but_keeps_listing(api, project):
    issued = make_key(project, name="old")
    response = api.delete(f"/v1/keys/{issued.key.public_id}")
    assert response.status_code == 200 and response.json() == {"success": True}
    listed = {item["id"]: item for item in api.get("/v1/keys").json()}
    assert listed[issued.key.public_id]["is_active"] is False
    assert listed[issued.key.public_id]["revoked_at"].endswith("Z")
    assert api.get("/v1/keys", **bearer(issued.raw)).status_code == 401


def test_rotate_kills_old_key(client, api_key):
    raw, key = api_key
    response = client.post(
        f"/v1/keys/{key.public_id}/rotate",
        {"name": "renamed"},
        content_type="application/json",
        **bearer(raw),
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "renamed" and body["id"] != key.public_id
    refused = client.get("/v1/keys", **bearer(raw))
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    listed = client.get("/v1/keys", **bearer(body["key"])).json()
    new = next(item for item in listed if item["id"] == body["id"])
    assert new["rotation_parent_key_id"] == key.public_id


def test_rotate_of_revoked_key_conflicts(api, project):
    issued = make_key(project, name="old")
    api.delete(f"/v1/keys/{issued.key.public_id}")
    response = api.post(f"/v1/keys/{issued.key.public_id}/rotate", content_type="application/json")
    assert response.status_code == 409 and response.json()["code"] == "conflict"


def test_other_projects_key_is_not_found(api, other_api_key):
    _, other = other_api_key
    for response in (
        api.delete(f"/v1/keys/{other.public_id}"),
        api.post(f"/v1/keys/{other.public_id}/rotate", content_type="application/json"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    other.refresh_from_db()
    assert other.revoked_at is None


def test_expired_and_revoked_keys_are_refused(client, project):
    expired = make_key(project, expires_at=timezone.now() - timezone.timedelta(minutes=1))
    response = client.get("/v1/keys", **bearer(expired.raw))
    assert response.status_code == 401 and "expired" in response.json()["error"]
    revoked = make_key(project)
    revoked.key.revoked_at = timezone.now()
    revoked.key.save()
    response = client.get("/v1/keys", **bearer(revoked.raw))
    assert response.status_code == 401 and "revoked" in response.json()["error"]


def test_bad_input_is_enveloped(api):
    response = api.post("/v1/keys", {"scope": "root"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["request_id"].startswith("req_")
    response = api.post("/v1/keys", "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"


def test_wrong_method_is_enveloped(api):
    response = api.put("/v1/keys")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


def test_list_queries_do_not_grow_with_keys(api, project, django_assert_max_num_queries):
    api.get("/v1/keys")
    with CaptureQueriesContext(connection) as one_key:
        api.get("/v1/keys")
    for i in range(20):
        rotated = make_key(project, name=f"k{i}")
        rotate_api_key(rotated.key)
    with django_assert_max_num_queries(len(one_key.captured_queries)):
        assert len(api.get("/v1/keys").json()) == 41


def test_every_key_change_is_audited_once_whichever_face_made_it(client, api_key, project):
    raw, caller = api_key
    created = client.post(
        "/v1/keys", {"name": "ci"}, content_type="application/json", **bearer(raw)
    ).json()
    rotated = client.post(
        f"/v1/keys/{created['id']}/rotate", {}, content_type="application/json", **bearer(raw)
    ).json()
    client.delete(f"/v1/keys/{rotated['id']}", **bearer(raw))
    client.delete(f"/v1/keys/{rotated['id']}", **bearer(raw))  # already revoked: no second row
    rows = list(
        AuditEvent.objects.filter(target_type="api_key")
        .exclude(action="apikey.create", target_id=caller.public_id)
        .order_by("id")
    )
    assert [(r.action, r.target_id) for r in rows] == [
        ("apikey.create", created["id"]),
        ("apikey.rotate", rotated["id"]),
        ("apikey.revoke", rotated["id"]),
    ]
    assert {r.metadata["via"] for r in rows} == {"api"}
    assert all(r.actor_label == f"api key {caller.prefix}…" for r in rows)
    assert {r.ip for r in rows} == {"127.0.0.1"}  # the caller's address, carried by its Actor
    assert rows[1].metadata["rotated_from"] == created["id"]
