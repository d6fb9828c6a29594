"""/v1 preview routes (docs/api.md §3): host, signed URLs, grants, proxy targets,
readiness.

Every response object here is STRICT on the client side (built with `Cls(**json)`),
so each one is assembled from an explicit key list and nothing else.
"""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any

from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from django.utils import timezone

from console.actor import Actor
from console.api.auth import READ, WRITE, api_key_required, methods
from console.api.errors import ApiError
from console.api.listing import api_page, page_body, wants_page, whole_list
from console.models import AuthMode, KeyScope, PreviewGrant, Sandbox, SandboxStatus
from console.paging import Keyset
from console.previews import service as previews
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes.service import get_sandbox
from console.timefmt import iso

TOKEN_HEADER = "x-nullspace-preview-proxy-token"
TRAFFIC_HEADER = "x-nullspace-traffic-access-token"
FORWARDED_HEADERS = ["x-forwarded-host", "x-forwarded-proto", "x-forwarded-for"]
TRANSPORT_KINDS = {"http": previews.HTTP_PORT, "websocket": previews.WEBSOCKET_PORT}
# Readiness bounds: the CLI sends 30 s / 500 ms; a request never holds a worker longer.
MAX_READINESS_SECONDS = 120
MIN_INTERVAL_MS = 50
MAX_INTERVAL_MS = 10_000
PROBE_TIMEOUT = 2.0
GRANT_KEYSET = Keyset("grant", "created_at")
GRANT_COLUMNS = [f.name for f in PreviewGrant._meta.concrete_fields]


def _grantable(sandbox: Sandbox) -> None:
    # A grant for a sandbox that can never serve again would be a dead link.
    if sandbox.status in (SandboxStatus.DESTROYED, SandboxStatus.ERROR):
        raise ApiError(
            "sandbox_not_ready",
            f"Sandbox {sandbox.public_id} is {sandbox.status}; it cannot serve previews",
        )


def _issue_direct(request, sandbox: Sandbox, port: int, ttl: int | None) -> dict[str, Any]:
    """Create a signed-link grant and describe it as a PreviewUrl (raw tokens, once)."""
    _grantable(sandbox)
    grant, raw = previews.create_grant(
        sandbox, port, expires_in_seconds=ttl, actor=Actor.of(request)
    )
    url, websocket_url = previews.preview_urls(sandbox, port, raw)
    return {
        "grant": previews.grant_to_dict(grant),
        "url": url,
        "websocket_url": websocket_url,
        "access_token_expires_at": iso(grant.expires_at),
        "access_token_transport": "query",
    }


@api_key_required(WRITE)
def host(request, sandbox_id: str) -> JsonResponse:
    """SandboxHostInfo. Previews are always signed here, so url/websocket_url carry a grant."""
    sandbox = get_sandbox(request.project, sandbox_id)
    port = previews.check_port(request.json.get("port"))
    preview = _issue_direct(request, sandbox, port, None)
    return JsonResponse(
        {
            "host": previews.preview_host(sandbox, port),
            "url": preview["url"],
            "websocket_url": preview["websocket_url"],
            "access_token_expires_at": preview["access_token_expires_at"],
            "access_token_transport": "query",
        }
    )


@api_key_required(WRITE)
def preview_url(request, sandbox_id: str, port: str) -> JsonResponse:
    """GET that creates a grant with the deployment's default lifetime (contract 3.1)."""
    # A GET passes the decorator's write check, but this one creates a credential.
    if request.api_key.scope != KeyScope.FULL:
        raise ApiError("permission_denied", "This API key is read-only")
    sandbox = get_sandbox(request.project, sandbox_id)
    return JsonResponse(_issue_direct(request, sandbox, previews.check_port(port), None))


@api_key_required(WRITE)
def signed_preview_url(request, sandbox_id: str, port: str) -> JsonResponse:
    sandbox = get_sandbox(request.project, sandbox_id)
    port_number = previews.check_port(port)
    ttl = previews.clamp_ttl(request.json.get("expires_in_seconds"))
    return JsonResponse(_issue_direct(request, sandbox, port_number, ttl))


def _transports(body: dict[str, Any]) -> list[str]:
    given = body.get("transports")
    if given is None:
        return ["http", "websocket"]
    if (
        not isinstance(given, list)
        or not given
        or any(not isinstance(t, str) or t not in TRANSPORT_KINDS for t in given)
    ):
        raise ApiError(
            "invalid_request", "transports must be a non-empty list of 'http' and/or 'websocket'"
        )
    return [t for t in TRANSPORT_KINDS if t in given]


@api_key_required(WRITE)
def proxy_target(request, sandbox_id: str, port: str) -> JsonResponse:
    sandbox = get_sandbox(request.project, sandbox_id)
    port_number = previews.check_port(port)
    body = request.json
    transports = _transports(body)
    ttl = previews.clamp_ttl(body.get("expires_in_seconds"))
    token_transport = body.get("token_transport", "header")
    if token_transport != "header":
        raise ApiError("invalid_request", "token_transport must be 'header'")
    hint = body.get("include_traffic_token_hint", True) is not False
    _grantable(sandbox)
    grant, raw = previews.create_grant(
        sandbox,
        port_number,
        auth_mode=AuthMode.PROXY,
        token_kinds=[TRANSPORT_KINDS[t] for t in transports],
        expires_in_seconds=ttl,
        actor=Actor.of(request),
    )
    http_url, websocket_url = previews.preview_urls(
        sandbox, port_number, raw, auth_mode=AuthMode.PROXY
    )
    private = not sandbox.allow_public_traffic
    return JsonResponse(
        {
            "grant": previews.grant_to_dict(grant),
            "sandbox_id": sandbox.public_id,
            "port": port_number,
            "token_header_name": TOKEN_HEADER,
            "expires_at": iso(grant.expires_at),
            "token_transport": "header",
            "http_url": http_url if "http" in transports else None,
            "websocket_url": websocket_url if "websocket" in transports else None,
            "http_token": raw.get(previews.HTTP_PORT),
            "websocket_token": raw.get(previews.WEBSOCKET_PORT),
            "required_forwarded_headers": list(FORWARDED_HEADERS),
            "traffic_access_required": private if hint else None,
            "traffic_access_header_name": TRAFFIC_HEADER if hint and private else None,
            "warnings": _proxy_warnings(sandbox, transports, private=private, hint=hint),
        }
    )


def _proxy_warnings(
    sandbox: Sandbox, transports: list[str], *, private: bool, hint: bool
) -> list[str]:
    warnings = []
    if len(transports) == 1:
        other = "websocket" if transports == ["http"] else "http"
        warnings.append(f"Only {transports[0]} is authorized; {other} requests will be refused.")
    if private and hint:
        warnings.append(
            f"The sandbox refuses public traffic: your proxy must also send {TRAFFIC_HEADER} "
            "with the sandbox's traffic access token."
        )
    if sandbox.status == SandboxStatus.PAUSED:
        action = (
            "resumed on first request" if sandbox.auto_resume else "refused until it is resumed"
        )
        warnings.append(f"The sandbox is paused; traffic will be {action}.")
    if settings.PREVIEW_SCHEME != "https":
        warnings.append(
            "The gateway is served over plain http; tokens cross the network unencrypted."
        )
    return warnings


@api_key_required(READ)
def list_grants(request, sandbox_id: str) -> JsonResponse:
    sandbox = get_sandbox(request.project, sandbox_id)
    grants = PreviewGrant.objects.filter(sandbox=sandbox)
    port = request.GET.get("port")
    if port not in (None, ""):
        if not port.isdigit():
            raise ApiError("invalid_request", "port must be an integer")
        grants = grants.filter(port=int(port))
    _flush_accounting()
    if wants_page(request):
        # Of the related rows, only what PreviewGrantInfo names (their JSON and dates stay put).
        models = grants.select_related("sandbox", "created_by", "created_by_key").only(
            *GRANT_COLUMNS,
            "sandbox__public_id",
            "created_by__username",
            "created_by_key__public_id",
        )
        return JsonResponse(
            page_body(api_page(request, models, GRANT_KEYSET), previews.grant_to_dict)
        )
    # The 0.1.9 CLI reads the whole list (thousands on a busy sandbox): rows as tuples of
    # just the answer's columns, shaped directly, not a model (and its relations) per row.
    found = whole_list(
        grants.values_list(*previews.GRANT_ROW_COLUMNS), GRANT_KEYSET, what="preview grants"
    )
    return JsonResponse(
        {
            "items": previews.grant_rows_to_dicts(found, sandbox.public_id),
            "next_token": None,
            "has_next": False,
        }
    )


def _flush_accounting() -> None:
    # Counters this process gathered but has not written yet would otherwise lag the list.
    previews.flush_accounting()


@api_key_required(WRITE)
def revoke(request, sandbox_id: str, grant_id: str) -> JsonResponse:
    sandbox = get_sandbox(request.project, sandbox_id)
    grant = (
        PreviewGrant.objects.select_related("sandbox", "sandbox__project__team", "created_by_key")
        .filter(sandbox=sandbox, public_id=grant_id)
        .first()
    )
    if grant is None:
        raise ApiError("preview_grant_not_found", f"Preview grant {grant_id} not found")
    previews.revoke_grant(grant, actor=Actor.of(request))
    _flush_accounting()
    grant.refresh_from_db()
    return JsonResponse({"success": True, "grant": previews.grant_to_dict(grant)})


# --- readiness ------------------------------------------------------------------------------


def _readiness_params(body: dict[str, Any]) -> tuple[str, float, float, str | None]:
    kind = body.get("kind", "tcp")
    if kind not in ("tcp", "http"):
        raise ApiError("invalid_request", "kind must be 'tcp' or 'http'")

    def number(name: str, default: float, low: float, high: float) -> float:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError("invalid_request", f"{name} must be a number")
        return max(low, min(high, float(value)))

    timeout = number("timeout_secs", 30, 0, MAX_READINESS_SECONDS)
    interval = number("interval_ms", 500, MIN_INTERVAL_MS, MAX_INTERVAL_MS) / 1000
    path = None
    if kind == "http":
        path = body.get("path") or "/"
        if not isinstance(path, str) or not path.startswith("/"):
            raise ApiError("invalid_request", "path must start with /")
    return kind, timeout, interval, path


def _route(sandbox: Sandbox, port: int) -> tuple[tuple[str, int] | None, str | None]:
    """The upstream address when the gateway could route there now, else why not."""
    sandbox.refresh_from_db(fields=["status"])
    if sandbox.status != SandboxStatus.RUNNING:
        return None, f"sandbox is {sandbox.status}"
    try:
        return get_driver().upstream(sandbox.runtime_id, port), None
    except RuntimeError_ as exc:
        return None, str(exc)


def _probe(address: tuple[str, int], kind: str, path: str | None, port: int) -> str | None:
    """None when the service answered, else a short reason (never upstream body text)."""
    host, upstream_port = address
    if kind == "tcp":
        try:
            socket.create_connection((host, upstream_port), timeout=PROBE_TIMEOUT).close()
            return None
        except OSError as exc:
            return f"connection to port {port} failed ({exc.strerror or type(exc).__name__})"
    conn = http.client.HTTPConnection(host, upstream_port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", path or "/", headers={"Host": f"localhost:{port}"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"HTTP request to port {port} failed ({getattr(exc, 'strerror', None) or type(exc).__name__})"
    finally:
        conn.close()
    return f"HTTP {status} from port {port}" if status >= 500 else None


@api_key_required(READ)
def readiness(request, sandbox_id: str, port: str) -> JsonResponse:
    """Always 200: the body says whether the route and the service are ready."""
    sandbox = get_sandbox(request.project, sandbox_id)
    port_number = previews.check_port(port)
    kind, timeout, interval, path = _readiness_params(request.json)
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        address, route_error = _route(sandbox, port_number)
        service_error = _probe(address, kind, path, port_number) if address else None
        ready = address is not None and service_error is None
        elapsed = time.monotonic() - started
        if ready or elapsed + interval > timeout:
            break
        time.sleep(interval)
    result: dict[str, Any] = {
        "ready": ready,
        "route_ready": address is not None,
        "service_ready": ready,
        "sandbox_id": sandbox.public_id,
        "port": port_number,
        "kind": kind,
        "checked_at": iso(timezone.now()),
        "elapsed_ms": int((time.monotonic() - started) * 1000),
        "attempts": attempts,
        "path": path,
        "code": None,
        "error": None,
        "suggested_action": None,
    }
    if address is None:
        result.update(
            code="preview_route_not_ready",
            error=f"No route to port {port_number}: {route_error}",
            suggested_action="Start or resume the sandbox, then retry.",
        )
    elif not ready:
        result.update(
            code="preview_service_not_ready",
            error=f"Service on port {port_number} is not ready: {service_error}",
            suggested_action=(
                f"Start the server inside the sandbox and bind it to 0.0.0.0:{port_number} "
                "(not 127.0.0.1) so the gateway can reach it."
            ),
        )
    return JsonResponse(result)


_base = "sandboxes/<str:sandbox_id>/"
_port_base = _base + "ports/<str:port>/"

urlpatterns = [
    path(_base + "host", methods(POST=host), name="v1-sandbox-host"),
    path(_port_base + "preview-url", methods(GET=preview_url), name="v1-preview-url"),
    path(
        _port_base + "signed-preview-url",
        methods(POST=signed_preview_url),
        name="v1-signed-preview-url",
    ),
    path(
        _port_base + "preview-proxy-target",
        methods(POST=proxy_target),
        name="v1-preview-proxy-target",
    ),
    path(_port_base + "readiness", methods(POST=readiness), name="v1-preview-readiness"),
    path(_base + "preview-urls", methods(GET=list_grants), name="v1-preview-urls"),
    path(
        _base + "preview-urls/<str:grant_id>", methods(DELETE=revoke), name="v1-preview-url-revoke"
    ),
]
