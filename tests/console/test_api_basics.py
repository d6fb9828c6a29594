from __future__ import annotations

import pytest
from django.utils import timezone

from console.keys.service import revoke_api_key, rotate_api_key

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
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


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


def test_bad_json_is_invalid_request(api):
    response = api.post("/v1/sandboxes", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["request_id"]


def test_non_object_json_is_invalid_request(api):
    response = api.post("/v1/sandboxes", data="[1, 2]", content_type="application/json")
    assert response.json()["code"] == "invalid_request"


def test_wrong_method_names_the_allowed_ones(api):
    response = api.put("/v1/sandboxes", data="{}", content_type="application/json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response["Allow"] and "POST" in response["Allow"]


def test_read_only_key_is_refused_a_write(client, read_key):
    raw, _ = read_key
    response = client.post(
        "/v1/sandboxes",
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    listed = client.get("/v1/sandboxes", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert listed.status_code == 200


def test_garbage_key_is_unauthorized_with_request_id(client):
    response = client.get("/v1/sandboxes", HTTP_AUTHORIZATION="Bearer nsk_not-a-real-key")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["request_id"] == response["X-Request-Id"]


def test_rate_limit_answers_429_with_retry_after(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    settings.API_RATE_BURST = 2
    codes = [api.get("/v1/sandboxes").status_code for _ in range(3)]
    assert codes[:2] == [200, 200]
    response = api.get("/v1/sandboxes")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limit_exceeded"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_planned_resources_answer_not_implemented(api):
    response = api.get("/v1/templates")
    assert response.status_code == 501
    assert response.json()["code"] == "not_implemented"


def test_bad_settings_fail_naming_the_variable(monkeypatch):
    import pytest as _pytest
    from django.core.exceptions import ImproperlyConfigured

    from console.env import env_bool, env_int, env_url

    monkeypatch.setenv("DEBUG", "yes")
    with _pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG")
    monkeypatch.setenv("MAX_RUNNING_SANDBOXES", "many")
    with _pytest.raises(ImproperlyConfigured, match="MAX_RUNNING_SANDBOXES"):
        env_int("MAX_RUNNING_SANDBOXES", 10)
    monkeypatch.setenv("SITE_URL", "localhost:8000")
    with _pytest.raises(ImproperlyConfigured, match="SITE_URL"):
        env_url("SITE_URL", "http://localhost:8000")


def test_server_refuses_to_start_on_a_bad_value(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATA_DIR": str(tmp_path), "PREVIEW_COOKIE_SAMESITE": "sometimes"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "PREVIEW_COOKIE_SAMESITE" in result.stderr
