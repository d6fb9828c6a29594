"""Security headers on console pages and /v1 answers; templates keep inline code out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_pages_and_api_answers_carry_the_policy(client, owner_client, project):
    for response in (
        client.get("/signin/"),
        owner_client.get(f"/t/{project.team.slug}/p/{project.slug}/"),
        client.get("/v1/sandboxes"),
    ):
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "camera=()" in response["Permissions-Policy"]
        assert "Strict-Transport-Security" not in response  # plain http


def test_an_answer_to_a_host_that_is_not_ours_carries_the_policy_too():
    response = Client().get("/signin/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Security-Policy"].startswith("default-src 'self'")
    assert "connect-src 'self';" in response["Content-Security-Policy"]  # no foreign ws host
    assert "camera=()" in response["Permissions-Policy"]


def test_hsts_on_https(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    response = Client().get("/signin/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000"
    # Over HTTPS the console's own sockets may only be wss://.
    assert "connect-src 'self' wss://testserver;" in response["Content-Security-Policy"]
    plain = Client().get("/signin/")
    assert (
        "connect-src 'self' ws://testserver wss://testserver;" in plain["Content-Security-Policy"]
    )


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO header


def test_console_templates_have_no_inline_code():
    # gateway/ pages are served on preview hosts, outside the console's policy.
    problems = []
    for path in TEMPLATES.rglob("*.html"):
        if path.relative_to(TEMPLATES).parts[0] == "gateway":
            continue
        text = re.sub(r"{%.*?%}|{#.*?#}", "", path.read_text(), flags=re.S)  # tags, not HTML
        for pattern in (
            r"\son[a-z]+\s*=",
            r"\sstyle\s*=\s*[\"']",
            r"<script(?![^>]*\bsrc=)",
            r"<style",
        ):
            for match in re.finditer(pattern, text):
                problems.append(f"{path.relative_to(TEMPLATES)}: {match.group(0).strip()}")
    assert problems == []
