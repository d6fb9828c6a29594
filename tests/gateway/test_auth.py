"""Every way in and every refusal: edge_token -> cookie, cookie, proxy token, traffic token."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from console import tokens
from console.actor import SYSTEM
from console.models import PreviewGrant, Sandbox, SandboxStatus
from console.previews import service as previews
from tests.gateway import upstreams
from tests.gateway.conftest import PORT, header, http

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


async def get(sandbox, path, *, headers=(), port=PORT):
    return await http(sandbox, path, headers=headers, port=port).get_response(timeout=5)


def error_code(response) -> str:
    body = json.loads(response["body"])
    assert set(body) >= {"error", "code", "request_id"} and body["request_id"].startswith("req_")
    return body["code"]


async def bootstrap(sandbox, raw) -> bytes:
    response = await get(sandbox, f"/echo?edge_token={raw['http_port']}")
    assert response["status"] == 303
    return header(response, b"set-cookie").split(b";")[0]


async def test_edge_token_becomes_a_host_only_cookie(routed, grant):
    _, raw = grant
    response = await get(routed, f"/echo/page?a=1&edge_token={raw['http_port']}&b=%20x")
    assert response["status"] == 303
    assert header(response, b"location") == b"/echo/page?a=1&b=%20x"
    cookie = header(response, b"set-cookie").decode()
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0].startswith("__ns_preview=nsc_")
    assert raw["http_port"] not in cookie
    assert {"Path=/", "HttpOnly", "SameSite=Lax"} <= set(parts)
    assert not any(p.lower().startswith("domain") for p in parts)
    assert "Secure" not in parts
    max_age = int(next(p for p in parts if p.startswith("Max-Age="))[8:])
    assert 590 <= max_age <= 600

    seen = json.loads(
        (await get(routed, "/echo/page", headers=[(b"cookie", b"a=1; " + parts[0].encode())]))[
            "body"
        ]
    )
    assert seen["path"] == "/echo/page"
    assert dict(seen["headers"])["Cookie"] == "a=1"


async def test_cookie_flags_for_https_and_iframes(routed, grant, settings):
    settings.PREVIEW_SCHEME = "https"
    settings.PREVIEW_COOKIE_SAMESITE = "None"
    settings.PREVIEW_COOKIE_PARTITIONED = True
    _, raw = grant
    response = await get(routed, f"/?edge_token={raw['http_port']}")
    parts = [p.strip() for p in header(response, b"set-cookie").decode().split(";")]
    assert {"Secure", "SameSite=None", "Partitioned", "HttpOnly", "Path=/"} <= set(parts)
    # `__Host-`: the browser accepts it only host-only, Secure, on Path=/.
    assert parts[0].startswith("__Host-ns_preview=")
    assert not [p for p in parts if p.lower().startswith("domain")]
    cookie = parts[0].encode()
    assert (await get(routed, "/echo", headers=[(b"cookie", cookie)]))["status"] == 200
    # On HTTPS the unprefixed name is not ours any more: anyone could have planted it.
    value = cookie.partition(b"=")[2]
    plain = await get(routed, "/echo", headers=[(b"cookie", b"__ns_preview=" + value)])
    assert error_code(plain) == "edge_token_missing"


async def test_no_credential_is_edge_token_missing(routed):
    response = await get(routed, "/echo")
    assert response["status"] == 401
    assert error_code(response) == "edge_token_missing"


@pytest.mark.parametrize(
    "token, code, status",
    [
        (lambda raw: raw["http_port"][:-2] + "xx", "edge_token_invalid", 401),
        (lambda raw: "garbage", "edge_token_invalid", 401),
        (lambda raw: raw["websocket_port"], "edge_token_scope_mismatch", 403),
    ],
    ids=["tampered", "garbage", "websocket-token-on-http"],
)
async def test_bad_edge_tokens(routed, grant, token, code, status):
    _, raw = grant
    response = await get(routed, f"/echo?edge_token={token(raw)}")
    assert (response["status"], error_code(response)) == (status, code)


async def test_a_grant_is_bound_to_its_port_and_sandbox(routed, project):
    _, for_other_port = await db(previews.create_grant)(routed, PORT + 1, actor=SYSTEM)
    response = await get(routed, f"/echo?edge_token={for_other_port['http_port']}")
    assert (response["status"], error_code(response)) == (403, "edge_token_scope_mismatch")

    other = await db(Sandbox.objects.create)(project=project, status=SandboxStatus.RUNNING)
    _, for_other_sandbox = await db(previews.create_grant)(other, PORT, actor=SYSTEM)
    response = await get(routed, f"/echo?edge_token={for_other_sandbox['http_port']}")
    assert error_code(response) == "edge_token_scope_mismatch"
    cookie = await bootstrap(other, for_other_sandbox)
    response = await get(routed, "/echo", headers=[(b"cookie", cookie)])
    assert error_code(response) == "edge_token_scope_mismatch"


async def test_expired_grant(routed, grant):
    row, raw = grant
    cookie = await bootstrap(routed, raw)
    await db(PreviewGrant.objects.filter(pk=row.pk).update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    from gateway import grants

    grants._cache.pop(row.public_id, None)  # expiry is read from the row; drop what we cached
    response = await get(routed, f"/echo?edge_token={raw['http_port']}")
    assert (response["status"], error_code(response)) == (401, "edge_token_expired")
    response = await get(routed, "/echo", headers=[(b"cookie", cookie)])
    assert error_code(response) == "edge_token_expired"


async def test_revocation_bites_cookie_and_token_at_once(routed, grant):
    row, raw = grant
    cookie = await bootstrap(routed, raw)
    assert (await get(routed, "/echo", headers=[(b"cookie", cookie)]))[
        "status"
    ] == 200  # now cached
    await db(previews.revoke_grant)(row, actor=SYSTEM)
    # In-process (InMemoryChannelLayer) this is immediate; through Redis it takes a round trip.
    response = await within_a_second(lambda: get(routed, "/echo", headers=[(b"cookie", cookie)]))
    assert (response["status"], error_code(response)) == (403, "preview_grant_revoked")
    response = await get(routed, f"/echo?edge_token={raw['http_port']}")
    assert error_code(response) == "preview_grant_revoked"
    # A visitor's browser gets a page that says what happened and what to do next.
    page = await get(
        routed, "/echo", headers=[(b"cookie", cookie), (b"sec-fetch-mode", b"navigate")]
    )
    html = page["body"].decode()
    assert page["status"] == 403 and header(page, b"content-type").startswith(b"text/html")
    assert "What to do next" in html and "turned off on purpose" in html
    assert "preview-url create" in html  # how to get a new link


async def within_a_second(request):
    deadline = asyncio.get_running_loop().time() + 1.0
    while True:
        response = await request()
        if response["status"] != 200 or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.01)


async def test_a_database_error_is_a_503_and_is_not_cached(routed, grant):
    _, raw = grant
    table = PreviewGrant._meta.db_table

    def rename(old, new):
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")

    await db(rename)(table, table + "_away")
    try:
        response = await get(routed, f"/echo?edge_token={raw['http_port']}")
    finally:
        await db(rename)(table + "_away", table)
    assert (response["status"], error_code(response)) == (503, "gateway_unavailable")
    assert header(response, b"retry-after") == b"2"
    assert (await get(routed, f"/echo?edge_token={raw['http_port']}"))["status"] == 303


@pytest.fixture
def proxy_grant(sandbox):
    return previews.create_grant(
        sandbox, PORT, auth_mode="proxy", expires_in_seconds=600, actor=SYSTEM
    )


async def test_proxy_token_header_on_every_request(routed, proxy_grant):
    _, raw = proxy_grant
    forwarded = [
        (b"x-forwarded-host", b"app.customer.example"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]
    response = await get(
        routed,
        "/echo?__ns_preview_transport=header&q=1",
        headers=[(b"x-nullspace-preview-proxy-token", raw["http_port"].encode()), *forwarded],
    )
    assert response["status"] == 200
    seen = json.loads(response["body"])
    names = {k.lower() for k, _ in seen["headers"]}
    assert "x-nullspace-preview-proxy-token" not in names
    assert seen["path"] == "/echo?q=1"
    got = {k.lower(): v for k, v in seen["headers"]}
    assert got["x-forwarded-host"] == "app.customer.example"
    assert got["x-forwarded-proto"] == "https"
    assert got["x-forwarded-for"] == "203.0.113.9"


@pytest.mark.parametrize(
    "token, code",
    [
        (None, "preview_proxy_token_missing"),
        (lambda raw: raw["http_port"] + "x", "preview_proxy_token_invalid"),
        (lambda raw: raw["websocket_port"], "preview_proxy_token_scope_mismatch"),
    ],
    ids=["missing", "tampered", "websocket-token-on-http"],
)
async def test_bad_proxy_tokens(routed, proxy_grant, token, code):
    _, raw = proxy_grant
    headers = [] if token is None else [(b"x-nullspace-preview-proxy-token", token(raw).encode())]
    response = await get(routed, "/echo?__ns_preview_transport=header", headers=headers)
    assert error_code(response) == code


async def test_proxy_token_expired_revoked_and_other_port(routed, proxy_grant):
    row, raw = proxy_grant
    send = [(b"x-nullspace-preview-proxy-token", raw["http_port"].encode())]
    response = await get(routed, "/echo", headers=send, port=PORT + 1)
    assert (response["status"], error_code(response)) == (403, "preview_proxy_token_scope_mismatch")
    await db(previews.revoke_grant)(row, actor=SYSTEM)
    response = await within_a_second(lambda: get(routed, "/echo", headers=send))
    assert (response["status"], error_code(response)) == (403, "preview_proxy_token_revoked")

    row2, raw2 = await db(previews.create_grant)(routed, PORT, auth_mode="proxy", actor=SYSTEM)
    await db(PreviewGrant.objects.filter(pk=row2.pk).update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = await get(
        routed, "/echo", headers=[(b"x-nullspace-preview-proxy-token", raw2["http_port"].encode())]
    )
    assert (response["status"], error_code(response)) == (401, "preview_proxy_token_expired")


async def test_private_sandbox_needs_the_traffic_token(routed, grant):
    secret = tokens.new_secret(tokens.TRAFFIC)
    await db(Sandbox.objects.filter(pk=routed.pk).update)(
        network={"allow_public_traffic": False}, traffic_token_digest=secret.digest
    )
    _, raw = grant
    cookie = await bootstrap_private(routed, raw, secret.raw)
    response = await get(routed, "/echo", headers=[(b"cookie", cookie)])
    assert (response["status"], error_code(response)) == (401, "traffic_access_token_missing")
    wrong = [(b"cookie", cookie), (b"x-nullspace-traffic-access-token", b"nst_wrong")]
    assert error_code(await get(routed, "/echo", headers=wrong)) == "traffic_access_token_invalid"
    right = [(b"cookie", cookie), (b"x-nullspace-traffic-access-token", secret.raw.encode())]
    response = await get(routed, "/echo", headers=right)
    assert response["status"] == 200
    assert secret.raw not in response["body"].decode()


async def bootstrap_private(sandbox, raw, traffic) -> bytes:
    # The sandbox cache may still hold the public answer for a moment; ask with the header.
    from gateway import upstream

    upstream._sandboxes.pop(sandbox.public_id, None)
    response = await get(
        sandbox,
        f"/?edge_token={raw['http_port']}",
        headers=[(b"x-nullspace-traffic-access-token", traffic.encode())],
    )
    assert response["status"] == 303
    return header(response, b"set-cookie").split(b";")[0]


async def test_unknown_host_shape_is_a_typed_404(transactional_db):
    from channels.testing import HttpCommunicator

    from console.asgi import application

    for host in (
        b"nothing.preview.localhost",
        b"abc-sb-x.preview.localhost",
        b"99999-sb-x.preview.localhost",
    ):
        response = await HttpCommunicator(
            application, "GET", "/", headers=[(b"host", host)]
        ).get_response()
        assert (response["status"], error_code(response)) == (404, "preview_not_found")


async def test_browser_navigation_gets_a_page_programs_get_json(routed, grant):
    _, raw = grant
    last = raw["http_port"][-1]
    bad = raw["http_port"][:-1] + ("1" if last == "0" else "0")  # always a different token
    page = await get(routed, f"/?edge_token={bad}", headers=[(b"sec-fetch-mode", b"navigate")])
    assert page["status"] == 401
    assert header(page, b"content-type").startswith(b"text/html")
    html = page["body"].decode()
    assert "Link not valid" in html and "edge_token_invalid" in html and bad not in html
    page = await get(routed, "/", headers=[(b"accept", b"text/html,application/xhtml+xml")])
    assert header(page, b"content-type").startswith(b"text/html")
    api = await get(routed, "/", headers=[(b"accept", b"application/json")])
    assert header(api, b"content-type") == b"application/json"
    assert error_code(api) == "edge_token_missing"


def test_resolver_is_the_test_upstream(settings):
    assert settings.PREVIEW_UPSTREAM_RESOLVER == "tests.gateway.upstreams.resolve"
    assert upstreams.resolve.__module__ == "tests.gateway.upstreams"
