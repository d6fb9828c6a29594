"""/v1 preview routes: STRICT shapes (compared with the client's own dataclasses), grants,
proxy targets, revocation, tenancy and readiness against a real local sandbox."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import fields
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from nullspace.types import (
    PreviewGrantInfo,
    PreviewProxyTarget,
    PreviewReadiness,
    PreviewUrl,
    RevokePreviewGrantResponse,
    SandboxHostInfo,
)

from console import tokens
from console.actor import SYSTEM, Actor
from console.models import AuditEvent, PreviewGrant, Sandbox, SandboxStatus
from console.previews import service as previews
from console.runtime import get_driver
from console.sandboxes import service as sandboxes
from tests.factories import make_sandbox_row

GRANT_KEYS = {f.name for f in fields(PreviewGrantInfo)}


def keys_of(cls) -> set[str]:
    return {f.name for f in fields(cls)}


@pytest.fixture
def sandbox(project):
    return make_sandbox_row(project)


@pytest.fixture
def foreign_sandbox(other_project):
    return make_sandbox_row(other_project)


def base(sandbox) -> str:
    return f"/v1/sandboxes/{sandbox.public_id}"


def post(api, url: str, body: dict | None = None):
    return api.post(url, data=json.dumps(body or {}), content_type="application/json")


def test_preview_url_get_creates_a_grant_with_exact_keys(api, sandbox):
    response = api.get(base(sandbox) + "/ports/3000/preview-url")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys_of(PreviewUrl)
    assert set(body["grant"]) == GRANT_KEYS
    PreviewUrl(**body)  # what the 0.1.9 client does
    grant = PreviewGrant.objects.get(public_id=body["grant"]["id"])
    assert grant.sandbox == sandbox and grant.port == 3000 and grant.auth_mode == "direct"
    lifetime = (grant.expires_at - grant.issued_at).total_seconds()
    assert round(lifetime) == settings.PREVIEW_DEFAULT_TTL_SECONDS
    url = urlsplit(body["url"])
    assert url.scheme == "http"
    assert url.netloc == previews.preview_host(sandbox, 3000)
    assert url.hostname == f"3000-{sandbox.host_label}.{settings.PREVIEW_DOMAIN}"
    http_token = parse_qs(url.query)["edge_token"][0]
    assert tokens.read_preview_token(http_token, tokens.DIRECT_HTTP) == grant.public_id
    ws = urlsplit(body["websocket_url"])
    assert ws.scheme == "ws"
    ws_token = parse_qs(ws.query)["edge_token"][0]
    assert tokens.read_preview_token(ws_token, tokens.DIRECT_WS) == grant.public_id
    assert tokens.read_preview_token(ws_token, tokens.DIRECT_HTTP) is None
    assert body["grant"]["status"] == "active"
    assert body["grant"]["bootstrap_transport"] == "query"
    assert body["access_token_transport"] == "query"
    # Each GET makes a new grant (contract 3.1: non-idempotent GET).
    again = api.get(base(sandbox) + "/ports/3000/preview-url").json()
    assert again["grant"]["id"] != body["grant"]["id"]


@pytest.mark.parametrize("asked, expected", [(None, None), (5, 60), (900, 900), (10**9, 86400)])
def test_signed_preview_url_expiry_is_clamped(api, sandbox, asked, expected):
    payload = {} if asked is None else {"expires_in_seconds": asked}
    response = post(api, base(sandbox) + "/ports/8080/signed-preview-url", payload)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys_of(PreviewUrl)
    grant = PreviewGrant.objects.get(public_id=body["grant"]["id"])
    expected = expected or settings.PREVIEW_DEFAULT_TTL_SECONDS
    assert round((grant.expires_at - grant.issued_at).total_seconds()) == expected


def test_signed_preview_url_rejects_non_numeric_expiry(api, sandbox):
    response = post(
        api, base(sandbox) + "/ports/8080/signed-preview-url", {"expires_in_seconds": "soon"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("port", ["22", "5900", "5999", "0", "70000", "web"])
def test_reserved_and_bad_ports_are_refused(api, sandbox, port):
    for response in (
        api.get(base(sandbox) + f"/ports/{port}/preview-url"),
        post(api, base(sandbox) + f"/ports/{port}/signed-preview-url"),
        post(api, base(sandbox) + f"/ports/{port}/preview-proxy-target"),
        post(api, base(sandbox) + "/host", {"port": port}),
    ):
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "invalid_request"
    assert not PreviewGrant.objects.exists()


def test_host_returns_bare_host_and_signed_urls(api, sandbox):
    response = post(api, base(sandbox) + "/host", {"port": 3000})
    assert response.status_code == 200
    body = response.json()
    assert set(body) <= keys_of(SandboxHostInfo)
    info = SandboxHostInfo(**body)
    assert info.host == previews.preview_host(sandbox, 3000)
    assert "/" not in info.host
    token = parse_qs(urlsplit(info.url).query)["edge_token"][0]
    grant_id = tokens.read_preview_token(token, tokens.DIRECT_HTTP)
    assert PreviewGrant.objects.filter(public_id=grant_id, sandbox=sandbox, port=3000).exists()


def test_proxy_target_both_transports(api, sandbox):
    response = post(
        api,
        base(sandbox) + "/ports/8080/preview-proxy-target",
        {"transports": ["http", "websocket"], "expires_in_seconds": 600},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys_of(PreviewProxyTarget)
    assert set(body["grant"]) == GRANT_KEYS
    target = PreviewProxyTarget(**body)
    grant_id = target.grant.id
    assert target.grant.auth_mode == "proxy" and target.grant.bootstrap_transport == "header"
    assert target.token_header_name == "x-nullspace-preview-proxy-token"
    assert target.token_transport == "header"
    assert target.required_forwarded_headers == [
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-for",
    ]
    assert tokens.read_preview_token(target.http_token, tokens.PROXY_HTTP) == grant_id
    assert tokens.read_preview_token(target.websocket_token, tokens.PROXY_WS) == grant_id
    # Kind-scoped: the HTTP token never opens a WebSocket, nor a direct link.
    assert tokens.read_preview_token(target.http_token, tokens.PROXY_WS) is None
    assert tokens.read_preview_token(target.http_token, tokens.DIRECT_HTTP) is None
    assert "edge_token" not in target.http_url
    assert parse_qs(urlsplit(target.http_url).query) == {"__ns_preview_transport": ["header"]}
    assert target.websocket_url.startswith("ws://")
    assert target.traffic_access_required is False
    assert target.traffic_access_header_name is None
    assert isinstance(target.warnings, list)


def test_proxy_target_single_transport_gets_one_token(api, sandbox):
    body = post(
        api, base(sandbox) + "/ports/8080/preview-proxy-target", {"transports": ["websocket"]}
    ).json()
    assert set(body) == keys_of(PreviewProxyTarget)
    assert body["http_url"] is None and body["http_token"] is None
    assert body["websocket_url"] and body["websocket_token"]
    assert body["grant"]["token_kinds"] == ["websocket_port"]
    assert any("http requests will be refused" in w for w in body["warnings"])


def test_proxy_target_private_sandbox_requires_traffic_header(api, project):
    private = Sandbox.objects.create(
        project=project, status=SandboxStatus.RUNNING, network={"allow_public_traffic": False}
    )
    body = post(api, base(private) + "/ports/8080/preview-proxy-target").json()
    assert body["traffic_access_required"] is True
    assert body["traffic_access_header_name"] == "x-nullspace-traffic-access-token"
    assert any("x-nullspace-traffic-access-token" in w for w in body["warnings"])
    quiet = post(
        api,
        base(private) + "/ports/8080/preview-proxy-target",
        {"include_traffic_token_hint": False},
    ).json()
    assert quiet["traffic_access_required"] is None
    assert quiet["traffic_access_header_name"] is None


@pytest.mark.parametrize(
    "payload", [{"transports": []}, {"transports": ["ssh"]}, {"transports": "http"}]
)
def test_proxy_target_rejects_bad_transports(api, sandbox, payload):
    response = post(api, base(sandbox) + "/ports/8080/preview-proxy-target", payload)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_list_filters_by_port_and_shows_counters(api, sandbox):
    first = api.get(base(sandbox) + "/ports/3000/preview-url").json()["grant"]["id"]
    post(api, base(sandbox) + "/ports/8080/signed-preview-url")
    PreviewGrant.objects.filter(public_id=first).update(
        use_count=5,
        http_request_count=4,
        websocket_connection_count=1,
        bytes_in_count=10,
        bytes_out_count=99,
    )
    everything = api.get(base(sandbox) + "/preview-urls").json()
    assert set(everything) == {"items", "next_token", "has_next"}
    assert len(everything["items"]) == 2
    for item in everything["items"]:
        assert set(item) == GRANT_KEYS
        PreviewGrantInfo(**item)
    only = api.get(base(sandbox) + "/preview-urls", {"port": 3000}).json()["items"]
    assert [item["id"] for item in only] == [first]
    assert only[0]["use_count"] == 5 and only[0]["bytes_out_count"] == 99
    assert only[0]["websocket_connection_count"] == 1
    bad = api.get(base(sandbox) + "/preview-urls", {"port": "x"})
    assert bad.json()["code"] == "invalid_request"


def test_revoke_is_strict_idempotent_and_reaches_the_gateway_check(api, sandbox):
    grant_id = api.get(base(sandbox) + "/ports/3000/preview-url").json()["grant"]["id"]
    response = api.delete(base(sandbox) + f"/preview-urls/{grant_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys_of(RevokePreviewGrantResponse)
    assert set(body["grant"]) == GRANT_KEYS
    result = RevokePreviewGrantResponse(**body)
    assert result.success is True
    assert result.grant.status == "revoked" and result.grant.revoked_at is not None
    state = previews.load_grant_state(grant_id)
    assert state.refusal(sandbox_id=sandbox.public_id, port=3000, transport="http") == "revoked"
    again = api.delete(base(sandbox) + f"/preview-urls/{grant_id}")
    assert again.status_code == 200
    assert again.json()["grant"]["revoked_at"] == body["grant"]["revoked_at"]


def test_a_keys_grant_and_its_audit_rows_name_the_key_and_address(api, api_key, sandbox):
    """The /v1 face passes its Actor: the grant records the key (no person) and both
    audit rows the key's label and the caller's address."""
    _, key = api_key
    grant_id = api.get(base(sandbox) + "/ports/3000/preview-url").json()["grant"]["id"]
    grant = PreviewGrant.objects.get(public_id=grant_id)
    assert (grant.created_by_key, grant.created_by) == (key, None)
    api.delete(base(sandbox) + f"/preview-urls/{grant_id}")
    rows = AuditEvent.objects.filter(target_id=grant_id).order_by("id")
    assert [(r.action, r.actor, r.actor_label, r.ip) for r in rows] == [
        ("preview_grant.created", None, f"api key {key.prefix}…", "127.0.0.1"),
        ("preview_grant.revoked", None, f"api key {key.prefix}…", "127.0.0.1"),
    ]


def test_another_projects_sandbox_and_grant_are_404(api, sandbox, foreign_sandbox):
    foreign = base(foreign_sandbox)
    for response in (
        api.get(foreign + "/ports/3000/preview-url"),
        post(api, foreign + "/ports/3000/signed-preview-url"),
        post(api, foreign + "/ports/3000/preview-proxy-target"),
        post(api, foreign + "/ports/3000/readiness", {"kind": "tcp", "timeout_secs": 0}),
        post(api, foreign + "/host", {"port": 3000}),
        api.get(foreign + "/preview-urls"),
    ):
        assert response.status_code == 404, response.content
        assert response.json()["code"] == "sandbox_not_found"
    foreign_grant, _ = previews.create_grant(foreign_sandbox, 3000, actor=SYSTEM)
    for url in (
        foreign + f"/preview-urls/{foreign_grant.public_id}",
        base(sandbox) + f"/preview-urls/{foreign_grant.public_id}",
    ):
        response = api.delete(url)
        assert response.status_code == 404
        assert response.json()["code"].endswith("not_found")
    foreign_grant.refresh_from_db()
    assert foreign_grant.revoked_at is None


def test_read_only_key_lists_but_cannot_mint(client, read_key, sandbox):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {read_key[0]}"
    minted = client.get(base(sandbox) + "/ports/3000/preview-url")
    assert minted.status_code == 403
    assert minted.json()["code"] == "permission_denied"
    assert post(client, base(sandbox) + "/ports/3000/signed-preview-url").status_code == 403
    assert client.get(base(sandbox) + "/preview-urls").status_code == 200
    assert not PreviewGrant.objects.exists()


def test_no_key_is_unauthorized(client, sandbox):
    response = client.get(base(sandbox) + "/preview-urls")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_destroyed_sandbox_gets_no_new_grant(api, project):
    gone = make_sandbox_row(project, SandboxStatus.DESTROYED)
    response = api.get(base(gone) + "/ports/3000/preview-url")
    # Gone means gone (docs/api.md): a destroyed sandbox is not found.
    assert response.status_code == 404
    assert response.json()["code"] == "sandbox_not_found"


# --- readiness ---------------------------------------------------------------------------


def test_readiness_bad_kind_is_invalid(api, sandbox):
    response = post(api, base(sandbox) + "/ports/3000/readiness", {"kind": "udp"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_readiness_of_a_paused_sandbox_is_200_not_routed(api, project):
    paused = make_sandbox_row(project, SandboxStatus.PAUSED)
    response = post(
        api,
        base(paused) + "/ports/3000/readiness",
        {"kind": "tcp", "timeout_secs": 0.2, "interval_ms": 50},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys_of(PreviewReadiness)
    result = PreviewReadiness(**body)
    assert not result.ready and not result.route_ready and not result.service_ready
    assert result.attempts >= 2
    assert result.code == "preview_route_not_ready"


@pytest.fixture
def live_sandbox(runtime, settings, project, api_key):
    """A real sandbox on this test's runtime, in its own network namespace: its port 8123
    is its own, whatever listens on the host's."""
    settings.RUNTIME_NETNS = "auto"
    get_driver.cache_clear()
    sandbox, _ = sandboxes.create_sandbox(project, actor=Actor.key(api_key[1]))
    yield sandbox
    sandboxes.destroy_sandbox(sandbox, actor=Actor())
    get_driver.cache_clear()


def _wait_listening(sandbox, port: int, timeout: float = 15) -> None:
    host, upstream_port = get_driver().upstream(sandbox.public_id, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, upstream_port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {host}:{upstream_port}")


def test_readiness_against_a_real_sandbox(api, live_sandbox):
    url = base(live_sandbox) + "/ports/8123/readiness"
    response = post(api, url, {"kind": "tcp", "timeout_secs": 0.4, "interval_ms": 100})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys_of(PreviewReadiness)
    assert body["route_ready"] is True and body["ready"] is False
    assert body["code"] == "preview_service_not_ready"
    assert "0.0.0.0" in body["suggested_action"]
    assert body["attempts"] >= 3
    assert 300 <= body["elapsed_ms"] < 3000

    sandboxes.start_process(
        live_sandbox,
        sandboxes.exec_request(
            {"command": "python3 -m http.server 8123 --bind 0.0.0.0", "shell": True},
            background=True,
        ),
    )
    _wait_listening(live_sandbox, 8123)
    for payload in (
        {"kind": "tcp", "timeout_secs": 10, "interval_ms": 100},
        {"kind": "http", "path": "/", "timeout_secs": 10, "interval_ms": 100},
    ):
        body = post(api, url, payload).json()
        assert set(body) == keys_of(PreviewReadiness)
        assert body["ready"] is True and body["service_ready"] is True, body
        assert body["code"] is None and body["error"] is None
        assert body["kind"] == payload["kind"]
    assert body["path"] == "/"


def test_the_whole_list_is_the_pages_item_for_item(api, sandbox, owner):
    """The unpaged list (read as plain rows, console/previews/service.py) answers exactly
    what the pages (model instances, `grant_to_dict`) answer: every status, a key's and a
    person's grant, counters, errors and dates."""
    from datetime import timedelta

    from django.utils import timezone

    for port in (3000, 3001, 3002, 3003):
        api.get(base(sandbox) + f"/ports/{port}/preview-url")
    proxied = post(
        api, base(sandbox) + "/ports/3004/preview-proxy-target", {"transports": ["http"]}
    )
    assert proxied.status_code == 200, proxied.content
    by_person, _ = previews.create_grant(sandbox, 3005, actor=Actor.person(owner))
    nobody, _ = previews.create_grant(sandbox, 3006, actor=SYSTEM)
    now = timezone.now()
    grants = PreviewGrant.objects.filter(sandbox=sandbox)
    grants.filter(port=3000).update(revoked_at=now)
    grants.filter(port=3001).update(disabled_at=now, last_error_code="upstream_refused")
    grants.filter(port=3002).update(expires_at=now - timedelta(seconds=1))
    grants.filter(port=3003).update(
        first_used_at=now, last_used_at=now, use_count=3, bytes_in_count=7, last_error_at=now
    )
    whole = api.get(base(sandbox) + "/preview-urls")
    paged = api.get(base(sandbox) + "/preview-urls", {"limit": 100})
    assert whole.status_code == paged.status_code == 200
    items = whole.json()["items"]
    assert len(items) == 7
    assert items == paged.json()["items"]
    assert {item["status"] for item in items} == {"revoked", "disabled", "expired", "active"}
    principals = {item["port"]: item["principal_id"] for item in items}
    assert principals[3005] == owner.get_username() and principals[3006] is None
    assert {item["auth_mode"] for item in items} == {"direct", "proxy"}
    for item in items:
        assert set(item) == GRANT_KEYS
        PreviewGrantInfo(**item)
    assert nobody.public_id in {item["id"] for item in items} and by_person.public_id
