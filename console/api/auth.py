"""Bearer API-key authentication for /v1: the one decorator every API view wears.

It reads `Authorization: Bearer`, checks the key in constant time, applies the
per-key rate limit, parses a JSON body once into `request.json`, sets
`request.project` and `request.api_key`, and turns every ApiError (or crash) into
the contract's envelope. It never logs the raw key.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from psycopg_pool import PoolTimeout

from console.api.errors import ApiError, error_response
from console.api.json_body import check_params, read_json_body, too_large
from console.errors import DomainError
from console.models import ApiKey, KeyScope, Project
from console.ratelimit import Bucket, take
from console.tokens import lookup_prefix, secret_matches

log = logging.getLogger(__name__)


READ = "read"
WRITE = "write"
# Routes authorized by something other than a key, as the /v1 guard test requires them
# to say: a signed URL's token, or nothing at all (the unknown-route answer).
SIGNED_URL = "signed-url"
PUBLIC = "public"
# What a route's body is: parsed JSON, or bytes the view reads itself.
JSON_BODY = "json"
RAW_BODY = "raw"
MULTIPART_BODY = "multipart"
LAST_USED_GRANULARITY = timedelta(seconds=60)


class ApiRequest(HttpRequest):
    """A /v1 request past `api_key_required` (the type handlers annotate with)."""

    project: Project
    api_key: ApiKey
    json: dict[str, Any]
    request_id: str


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate_key(raw: str | None) -> ApiKey:
    """The active key for a raw bearer value, or ApiError(unauthorized) saying why not."""
    if not raw:
        raise ApiError(
            "unauthorized",
            "Missing API key: send Authorization: Bearer <key>",
            suggested_action="Create an API key in the console and export NULLSPACE_API_KEY.",
        )
    key = (
        ApiKey.objects.select_related("project", "project__team")
        .filter(prefix=lookup_prefix(raw))
        .first()
    )
    if key is None or not secret_matches(raw, key.digest):
        raise ApiError("unauthorized", "Invalid API key")
    if key.revoked_at is not None:
        raise ApiError("unauthorized", "This API key has been revoked")
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise ApiError("unauthorized", "This API key has expired")
    _touch(key)
    return key


def _touch(key: ApiKey) -> None:
    # At most one write a minute per key: last_used_at is for display, not accounting.
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_GRANULARITY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


def check_rate_limit(key: ApiKey) -> None:
    """Take one token from the key's bucket (HTTP requests, WebSocket starts and frames)."""
    bucket = Bucket(settings.API_RATE_LIMIT_PER_MINUTE, settings.API_RATE_BURST)
    wait = take(f"key:{key.public_id}", bucket)
    if wait > 0:
        raise ApiError(
            "rate_limit_exceeded",
            f"Rate limit of {bucket.per_minute} requests a minute (bursts of {bucket.burst}) "
            "exceeded",
            retryable=True,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def query_int(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter from `low` to `high`; absent or empty gives `default`."""
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError("invalid_request", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError("invalid_request", f"{name} must be from {low} to {high}")
    return value


def api_key_required(scope: str = READ, *, body: str = JSON_BODY) -> Callable:
    """Authenticate with an API key; `scope=WRITE` refuses read-only keys on writes.

    `body` says what the route reads: JSON (parsed into `request.json`, see
    console/api/json_body.py), or RAW / MULTIPART bytes the view streams itself."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: ApiRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                key = authenticate_key(bearer_token(request.headers.get("Authorization")))
                check_rate_limit(key)
                needs_write = scope == WRITE and request.method not in ("GET", "HEAD", "OPTIONS")
                if needs_write and key.scope != KeyScope.FULL:
                    raise ApiError(
                        "permission_denied",
                        "This API key is read-only",
                        suggested_action="Use a key with full access for changes.",
                    )
                check_params(request, kwargs)
                request.api_key = key
                request.project = key.project
                request.json = read_json_body(request) if body == JSON_BODY else {}
                return view(request, *args, **kwargs)
            except DomainError as error:
                return error_response(request, error)
            except RequestDataTooBig:
                return error_response(request, too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
            except OperationalError as exc:
                if not isinstance(exc.__cause__, PoolTimeout):
                    log.exception("database error in %s %s", request.method, request.path)
                    return error_response(
                        request, ApiError("internal_error", "Database error", retryable=True)
                    )
                # Every pooled connection stayed busy for DB_POOL_TIMEOUT: busy, not broken.
                return error_response(
                    request,
                    ApiError(
                        "database_busy",
                        "The server is busy; try again",
                        status=503,
                        retryable=True,
                        headers={"Retry-After": "1"},
                    ),
                )
            except Exception:
                log.exception("unhandled error in %s %s", request.method, request.path)
                return error_response(
                    request, ApiError("internal_error", "Internal server error", retryable=True)
                )

        # Markers on the view function that the /v1 guard test reads (tests/console):
        # mypy does not model attributes set on functions.
        wrapper.api_scope = scope  # type: ignore[attr-defined]
        wrapper.api_body = body  # type: ignore[attr-defined]
        return wrapper

    return decorate


def methods(**views: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """One URL, one view per HTTP method: `methods(GET=list_x, POST=create_x)`."""

    @csrf_exempt
    def dispatch(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        view = views.get(request.method or "")
        if view is None:
            allowed = ", ".join(sorted(views))
            return error_response(
                request,
                ApiError(
                    "method_not_allowed",
                    f"{request.method} is not allowed here (allowed: {allowed})",
                    headers={"Allow": allowed},
                ),
            )
        return view(request, *args, **kwargs)

    dispatch.api_methods = views  # type: ignore[attr-defined]  # a marker, as api_scope above
    return dispatch
