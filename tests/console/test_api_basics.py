from __future__ import annotations

import pytest
from django.utils import timezone

from console.keys import revoke_api_key, rotate_api_key

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_unknown_route_is_an_enveloped_404(api):
    response = api.get("/v1/does-not-exist")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert body["request_id"].startswith("req_")


def test_missing_key_is_unauthorized(client):
    response = client.get("/v1/sandboxes")
    assert response.status_code in (401, 404)
    assert response.json()["code"] in ("unauthorized", "not_found")


def test_revoked_and_rotated_keys_are_refused(api_key):
    raw, key = api_key
    from console.api.auth import authenticate_key
    from console.api.errors import ApiError

    assert authenticate_key(raw).pk == key.pk
    rotated = rotate_api_key(key)
    with pytest.raises(ApiError) as excinfo:
        authenticate_key(raw)
    assert excinfo.value.code == "unauthorized"
    assert authenticate_key(rotated.raw).pk == rotated.key.pk
    revoke_api_key(rotated.key)
    with pytest.raises(ApiError):
        authenticate_key(rotated.raw)


def test_expired_key_is_refused(project):
    from console.api.auth import authenticate_key
    from console.api.errors import ApiError
    from tests.factories import make_key

    issued = make_key(project, expires_at=timezone.now() - timezone.timedelta(seconds=1))
    with pytest.raises(ApiError) as excinfo:
        authenticate_key(issued.raw)
    assert "expired" in excinfo.value.message


def test_key_is_stored_hashed(api_key):
    raw, key = api_key
    from console.models import ApiKey

    row = ApiKey.objects.values().get(pk=key.pk)
    assert raw not in str(row)
    assert raw not in repr(key)
