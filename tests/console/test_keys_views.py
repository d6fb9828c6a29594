from __future__ import annotations

import logging
import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console.actor import Actor
from console.api.auth import authenticate_key
from console.api.errors import ApiError
from console.keys.service import create_api_key
from console.models import ApiKey, AuditEvent, KeyScope

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
BASE = "/t/acme/p/web/keys/"


def _raw_from(response) -> str:
    found = re.search(r'value="(nsk_[^"]+)"', response.content.decode())
    assert found, "the new key is not in the response"
    return found.group(1)


def test_list_shows_keys_without_secrets(viewer_client, api_key):
    raw, key = api_key
    response = viewer_client.get(BASE)
    assert response.status_code == 200
    body = response.content.decode()
    assert key.prefix in body and key.name in body
    assert raw not in body
    assert "<html" in body


def test_htmx_list_gets_fragment(viewer_client, project):
    response = viewer_client.get(BASE, **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="api-keys"')
    assert "<html" not in body


def test_create_shows_key_once_and_stores_only_digest(member_client, project, member, caplog):
    caplog.set_level(logging.DEBUG)
    response = member_client.post(
        BASE + "new/", {"name": "ci", "scope": "full", "expires": "30"}, **HX
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("max-age=0")
    raw = _raw_from(response)
    key = ApiKey.objects.get(project=project, name="ci")
    assert key.created_by == member and key.expires_at is not None
    assert raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert raw not in str(list(AuditEvent.objects.values()))
    assert raw not in str(dict(member_client.session))
    assert not list(get_messages(response.wsgi_request))
    # Using the key must not log it either.
    assert member_client.get("/v1/keys", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    assert raw not in caplog.text
    # Shown once: the next page load does not have it.
    assert raw not in member_client.get(BASE).content.decode()
    assert AuditEvent.objects.filter(action="apikey.create", target_id=key.public_id).exists()


def test_plain_create_renders_whole_page_with_key(owner_client, project):
    response = owner_client.post(BASE + "new/", {"name": "laptop", "scope": "read"})
    assert response.status_code == 200
    assert "<html" in response.content.decode()
    raw = _raw_from(response)
    assert authenticate_key(raw).scope == KeyScope.READ


def test_invalid_create_rerenders_form(member_client, project):
    response = member_client.post(BASE + "new/", {"name": "", "scope": "full"}, **HX)
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not ApiKey.objects.filter(project=project).exists()


def test_viewer_cannot_create_revoke_or_rotate(viewer_client, api_key):
    _, key = api_key
    assert viewer_client.post(BASE + "new/", {"name": "x", "scope": "full"}).status_code == 403
    assert viewer_client.post(f"{BASE}{key.public_id}/revoke/").status_code == 403
    assert viewer_client.post(f"{BASE}{key.public_id}/rotate/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_revoke_kills_key_at_once(member_client, api_key):
    raw, key = api_key
    confirm = member_client.get(f"{BASE}{key.public_id}/revoke/")
    assert confirm.status_code == 200 and b"Revoke key" in confirm.content
    response = member_client.post(f"{BASE}{key.public_id}/revoke/")
    assert response.status_code == 302 and response["Location"] == BASE
    with pytest.raises(ApiError):
        authenticate_key(raw)
    assert AuditEvent.objects.filter(action="apikey.revoke", target_id=key.public_id).exists()


def test_revoke_htmx_returns_fragment(member_client, api_key):
    _, key = api_key
    response = member_client.post(f"{BASE}{key.public_id}/revoke/", **HX)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<section id="api-keys"')
    assert "revoked" in response.content.decode()
    assert "messages" in response.headers["HX-Trigger"]


def test_rotate_shows_new_secret_and_old_dies(member_client, api_key):
    raw, key = api_key
    response = member_client.post(f"{BASE}{key.public_id}/rotate/", **HX)
    new_raw = _raw_from(response)
    assert new_raw != raw
    with pytest.raises(ApiError):
        authenticate_key(raw)
    rotated = authenticate_key(new_raw)
    assert rotated.rotated_from_id == key.pk and rotated.name == key.name
    assert AuditEvent.objects.filter(action="apikey.rotate", target_id=rotated.public_id).exists()


def test_rotate_of_revoked_key_is_refused(member_client, api_key):
    _, key = api_key
    member_client.post(f"{BASE}{key.public_id}/revoke/")
    response = member_client.post(f"{BASE}{key.public_id}/rotate/")
    assert response.status_code == 302
    assert ApiKey.objects.filter(project=key.project).count() == 1


def test_other_projects_key_is_404(member_client, other_api_key):
    _, key = other_api_key
    assert member_client.post(f"{BASE}{key.public_id}/revoke/").status_code == 404
    assert member_client.post(f"{BASE}{key.public_id}/rotate/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_other_teams_project_is_404(member_client, other_project):
    assert member_client.get("/t/other/p/secret/keys/").status_code == 404
    assert member_client.post("/t/other/p/secret/keys/new/", {"name": "x"}).status_code == 404


def test_csrf_is_enforced(csrf_client, project):
    response = csrf_client.post(BASE + "new/", {"name": "x", "scope": "full"})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(project=project).exists()


def test_list_queries_do_not_grow_with_keys(
    member_client, project, member, django_assert_max_num_queries
):
    create_api_key(project, name="first", actor=Actor.person(member))
    with CaptureQueriesContext(connection) as one_key:
        member_client.get(BASE)
    for i in range(30):
        create_api_key(project, name=f"k{i}", actor=Actor.person(member))
    with django_assert_max_num_queries(len(one_key.captured_queries)):
        member_client.get(BASE)
