"""CORS for browser clients of the /v1 API and /healthz (docs/api.md, "CORS").

Origins come from the CORS_ALLOWED_ORIGINS setting (`*` = any). The API authenticates
with a Bearer key only, so `Access-Control-Allow-Credentials` is never sent: a page on
another origin can never ride on a signed-in console session.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from console.api.errors import api_error

PATH_PREFIXES = ("/v1/", "/healthz")
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, X-Request-Id, Range, "
    "Upload-Offset, Upload-Length, X-Nullspace-Client"
)
EXPOSED_HEADERS = "X-Request-Id, Retry-After, Allow, Content-Range, ETag"
PREFLIGHT_MAX_AGE = "600"


def allowed_origin(origin: str) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when the origin is not allowed."""
    allowed = settings.CORS_ALLOWED_ORIGINS
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


class CorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
        if not origin or not request.path.startswith(PATH_PREFIXES):
            return self.get_response(request)
        allow = allowed_origin(origin)
        is_preflight = request.method == "OPTIONS" and (
            "Access-Control-Request-Method" in request.headers
        )
        if is_preflight:
            return self._preflight(request, origin, allow)
        response = self.get_response(request)
        if allow is not None:
            response["Access-Control-Allow-Origin"] = allow
            response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        _vary_on_origin(response)
        return response

    def _preflight(self, request: HttpRequest, origin: str, allow: str | None) -> HttpResponse:
        if allow is None:
            response: HttpResponse = api_error(
                request,
                "permission_denied",
                f"Origin {origin} may not call this API from a browser",
                suggested_action="Ask the operator to add it to CORS_ALLOWED_ORIGINS.",
            )
        else:
            response = HttpResponse(status=200)
            response["Access-Control-Allow-Origin"] = allow
            response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        _vary_on_origin(response)
        return response


def _vary_on_origin(response: HttpResponse) -> None:
    vary = [v.strip() for v in response.get("Vary", "").split(",") if v.strip()]
    if "Origin" not in vary:
        response["Vary"] = ", ".join([*vary, "Origin"])
