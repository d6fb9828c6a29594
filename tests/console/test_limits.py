"""Honest limits: the per-key token bucket, keys per project and grants per sandbox."""

from __future__ import annotations

import time

import pytest

from console.models import ApiKey, PreviewGrant
from tests.factories import make_key, make_sandbox_row

pytestmark = pytest.mark.django_db


def test_rate_limit_is_a_token_bucket_not_a_fixed_minute(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 120  # one token every 0.5 s
    settings.API_RATE_BURST = 3
    codes = [api.get("/v1/sandboxes").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = api.get("/v1/sandboxes")
    assert refused.json()["code"] == "rate_limit_exceeded"
    assert refused["Retry-After"] == "1"  # the next token, not the next minute
    time.sleep(0.6)
    assert api.get("/v1/sandboxes").status_code == 200  # one token came back
    assert api.get("/v1/sandboxes").status_code == 429  # and only one


def test_keys_per_project_are_capped(api, project, settings):
    settings.MAX_KEYS_PER_PROJECT = 3  # the fixture's key is the first
    for n in range(2):
        assert (
            api.post("/v1/keys", {"name": f"k{n}"}, content_type="application/json").status_code
            == 201
        )
    refused = api.post("/v1/keys", {"name": "one too many"}, content_type="application/json")
    assert refused.status_code == 429 and refused.json()["code"] == "quota_exceeded"
    assert ApiKey.objects.filter(project=project).count() == 3
    # Revoked keys do not count: revoking one makes room.
    victim = ApiKey.objects.filter(project=project, name="k0").get()
    assert api.delete(f"/v1/keys/{victim.public_id}").status_code == 200
    assert (
        api.post("/v1/keys", {"name": "room"}, content_type="application/json").status_code == 201
    )


def test_console_key_form_says_the_cap_is_reached(owner_client, project, settings):
    settings.MAX_KEYS_PER_PROJECT = 1
    make_key(project)
    url = f"/t/{project.team.slug}/p/{project.slug}/keys/new/"
    response = owner_client.post(url, {"name": "more", "scope": "full", "expires": ""})
    assert b"already has 1 active API keys" in response.content
    assert ApiKey.objects.filter(project=project).count() == 1


def test_grants_per_sandbox_are_capped(api, project, settings):
    settings.MAX_GRANTS_PER_SANDBOX = 2
    sandbox = make_sandbox_row(project)
    url = f"/v1/sandboxes/{sandbox.public_id}/ports/8080/signed-preview-url"
    for _ in range(2):
        assert api.post(url, {}, content_type="application/json").status_code == 200
    refused = api.post(url, {}, content_type="application/json")
    assert refused.status_code == 429 and refused.json()["code"] == "quota_exceeded"
    proxy = f"/v1/sandboxes/{sandbox.public_id}/ports/8080/preview-proxy-target"
    assert api.post(proxy, {}, content_type="application/json").status_code == 429
    assert PreviewGrant.objects.filter(sandbox=sandbox).count() == 2
