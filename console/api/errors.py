"""The contract's JSON error envelope (docs/api.md §1.6): every /v1 error goes through here."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

# Default HTTP status per code; the client classifies by code, humans and proxies by status.
STATUS_BY_CODE = {
    "invalid_request": 400,
    "invalid_fields": 400,
    "invalid_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "permission_denied": 403,
    "not_found": 404,
    "route_not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "sandbox_not_ready": 409,
    "snapshot_in_use": 409,
    "quota_exceeded": 429,
    "rate_limit_exceeded": 429,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "command_not_found": 400,
    "file_too_large": 413,
    "volume_quota_exceeded": 507,
    "volume_read_only": 403,
    "not_implemented": 501,
    "exec_timeout": 504,
    "exec_failed": 500,
    "internal_error": 500,
    "runtime_unavailable": 503,
    "disk_full": 507,
}


class ApiError(Exception):
    """Raise anywhere under a /v1 view; the decorator turns it into the envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        suggested_action: str | None = None,
        details: dict[str, Any] | None = None,
        error_detail: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _status_for(code)
        self.retryable = retryable
        self.suggested_action = suggested_action
        self.details = details
        self.error_detail = error_detail
        self.headers = headers or {}


def _status_for(code: str) -> int:
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    if code.endswith("_not_found"):
        return 404
    if code.endswith("_conflict"):
        return 409
    if code.endswith("_permission_denied"):
        return 403
    if "quota" in code:
        return 429
    return 400


def error_response(request, error: ApiError) -> JsonResponse:
    body: dict[str, Any] = {
        "error": error.message,
        "code": error.code,
        "request_id": getattr(request, "request_id", None),
    }
    for key in ("retryable", "suggested_action", "details", "error_detail"):
        value = getattr(error, key)
        if value is not None:
            body[key] = value
    response = JsonResponse(body, status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def api_error(request, code: str, message: str, **kwargs: Any) -> JsonResponse:
    return error_response(request, ApiError(code, message, **kwargs))


def not_found(what: str = "resource", code: str = "not_found") -> ApiError:
    return ApiError(code, f"{what} not found")
