"""The preview-grant domain module: creation rules, the dict shape, URLs and the gateway check."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest
from django.utils import timezone
from nullspace.types import PreviewGrantInfo

from console import tokens
from console.actor import SYSTEM, Actor
from console.errors import DomainError
from console.models import AuditEvent
from console.previews import service as previews
from tests.factories import make_sandbox_row


@pytest.fixture
def sandbox(project):
    return make_sandbox_row(project)


def test_create_grant_signs_kind_scoped_tokens(sandbox, owner):
    grant, raw = previews.create_grant(
        sandbox, 3000, expires_in_seconds=600, actor=Actor.person(owner)
    )
    assert set(raw) == {"http_port", "websocket_port"}
    assert tokens.read_preview_token(raw["http_port"], tokens.DIRECT_HTTP) == grant.public_id
    assert tokens.read_preview_token(raw["websocket_port"], tokens.DIRECT_WS) == grant.public_id
    assert tokens.read_preview_token(raw["http_port"], tokens.DIRECT_WS) is None
    assert 590 <= (grant.expires_at - grant.issued_at).total_seconds() <= 600
    assert AuditEvent.objects.filter(
        action="preview_grant.created", target_id=grant.public_id
    ).exists()


def test_proxy_grant_uses_proxy_kinds(sandbox):
    grant, raw = previews.create_grant(
        sandbox, 8080, auth_mode="proxy", token_kinds=["websocket_port"], actor=SYSTEM
    )
    assert set(raw) == {"websocket_port"}
    assert tokens.read_preview_token(raw["websocket_port"], tokens.PROXY_WS) == grant.public_id


@pytest.mark.parametrize("asked, expected", [(1, 60), (10**9, 86400), (120, 120)])
def test_expiry_is_clamped(sandbox, asked, expected):
    grant, _ = previews.create_grant(sandbox, 3000, expires_in_seconds=asked, actor=SYSTEM)
    assert round((grant.expires_at - grant.issued_at).total_seconds()) == expected


@pytest.mark.parametrize("port", [22, 5900, 5999, 0, 65536, "web", True])
def test_reserved_and_bad_ports_are_refused(sandbox, port):
    with pytest.raises(previews.PreviewRefused) as info:
        previews.create_grant(sandbox, port, actor=SYSTEM)
    assert info.value.code == "invalid_request"
    assert isinstance(info.value, DomainError)  # answered by each face in one place


def test_bad_token_kinds_refused(sandbox):
    with pytest.raises(previews.PreviewRefused):
        previews.create_grant(sandbox, 3000, token_kinds=["ssh"], actor=SYSTEM)
    with pytest.raises(previews.PreviewRefused):
        previews.create_grant(sandbox, 3000, token_kinds=[], actor=SYSTEM)


def test_grant_to_dict_has_exactly_the_contract_keys(sandbox, api_key):
    _, key = api_key
    grant, raw = previews.create_grant(sandbox, 3000, actor=Actor.key(key))
    data = previews.grant_to_dict(grant)
    assert set(data) == {f.name for f in fields(PreviewGrantInfo)}
    assert data["principal_id"] == key.public_id
    assert data["status"] == "active" and data["bootstrap_transport"] == "query"
    assert not any(token in str(data) for token in raw.values())
    PreviewGrantInfo(**data)


def test_revoke_sets_revoked_at_and_status(sandbox, owner):
    grant, _ = previews.create_grant(sandbox, 3000, actor=SYSTEM)
    previews.revoke_grant(grant, actor=Actor.person(owner))
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    assert previews.grant_to_dict(grant)["status"] == "revoked"
    first = grant.revoked_at
    previews.revoke_grant(grant, actor=Actor.person(owner))
    grant.refresh_from_db()
    assert grant.revoked_at == first
    assert AuditEvent.objects.filter(action="preview_grant.revoked").count() == 1


def test_preview_urls(sandbox, settings):
    settings.PREVIEW_DOMAIN = "preview.localhost"
    settings.PREVIEW_SCHEME = "http"
    settings.PREVIEW_PORT = 8000
    label = sandbox.public_id.replace("_", "-")
    url, ws = previews.preview_urls(
        sandbox, 3000, {"http_port": "nsg_a", "websocket_port": "nsgw_b"}
    )
    assert url == f"http://3000-{label}.preview.localhost:8000/?edge_token=nsg_a"
    assert ws == f"ws://3000-{label}.preview.localhost:8000/?edge_token=nsgw_b"
    settings.PREVIEW_SCHEME = "https"
    settings.PREVIEW_PORT = 443
    url, ws = previews.preview_urls(sandbox, 3000, {}, auth_mode="proxy")
    assert url == f"https://3000-{label}.preview.localhost/?__ns_preview_transport=header"
    assert ws.startswith("wss://")


def test_grant_state_refusals(sandbox):
    grant, _ = previews.create_grant(sandbox, 3000, token_kinds=["http_port"], actor=SYSTEM)
    state = previews.load_grant_state(grant.public_id)
    here = {"sandbox_id": sandbox.public_id, "port": 3000}
    assert state.refusal(**here, transport="http") is None
    assert state.refusal(**here, transport="websocket") == previews.SCOPE
    assert (
        state.refusal(sandbox_id=sandbox.public_id, port=3001, transport="http") == previews.SCOPE
    )
    assert state.refusal(sandbox_id="sb_other", port=3000, transport="http") == previews.SCOPE
    later = timezone.now() + timedelta(days=2)
    assert state.refusal(**here, transport="http", now=later) == previews.EXPIRED
    previews.revoke_grant(grant, actor=SYSTEM)
    assert (
        previews.load_grant_state(grant.public_id).refusal(**here, transport="http")
        == previews.REVOKED
    )
    assert previews.load_grant_state("pvg_missing") is None
