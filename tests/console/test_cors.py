"""CORS on /v1 and /healthz for browser clients (docs/api.md, "CORS")."""

from __future__ import annotations

import pytest

ORIGIN = "https://dashboard.example.com"


@pytest.fixture(autouse=True)
def allowed(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]


def test_preflight_from_an_allowed_origin(client):
    answer = client.options(
        "/v1/sandboxes",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert answer.status_code == 200
    assert answer["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in answer["Access-Control-Allow-Methods"]
    assert "Authorization" in answer["Access-Control-Allow-Headers"]
    assert "Origin" in answer["Vary"]
    assert "Access-Control-Allow-Credentials" not in answer


def test_preflight_from_another_origin_is_refused(client):
    answer = client.options(
        "/v1/sandboxes",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status_code == 403 and answer.json()["code"] == "permission_denied"
    assert "Access-Control-Allow-Origin" not in answer


def test_responses_carry_the_origin_only_when_allowed(client, api_key, db):
    ok = client.get("/healthz", headers={"Origin": ORIGIN})
    assert ok.status_code == 200 and ok["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-Id" in ok["Access-Control-Expose-Headers"]
    listed = client.get(
        "/v1/sandboxes", headers={"Origin": ORIGIN, "Authorization": f"Bearer {api_key[0]}"}
    )
    assert listed.status_code == 200 and listed["Access-Control-Allow-Origin"] == ORIGIN
    # An error answer is readable by the page too (it carries the request id).
    refused = client.get("/v1/sandboxes", headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused["Access-Control-Allow-Origin"] == ORIGIN
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other
    # The console is not a CORS resource, and credentials are never allowed.
    page = client.get("/accounts/login/", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in page
    assert "Access-Control-Allow-Credentials" not in listed


def test_any_origin_with_a_star(client, settings, db):
    settings.CORS_ALLOWED_ORIGINS = ["*"]
    answer = client.get("/healthz", headers={"Origin": "https://anything.example"})
    assert answer["Access-Control-Allow-Origin"] == "*"
