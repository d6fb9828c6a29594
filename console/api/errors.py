"""The contract's JSON error envelope (docs/api.md §1.6): every /v1 error goes through here.

This is the one place where a domain error's code becomes an HTTP status for `/v1`
(`status_for`); domain code raises console.errors.DomainError and never picks a status.
ApiError is the `/v1` faces' own error: a DomainError that may also set a status or
headers (a 405's Allow, a 429's Retry-After)."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from console.errors import DomainError

# HTTP status per code; the client classifies by code, humans and proxies by status.
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
    "runtime_error": 500,
    "disk_full": 507,
    "volume_limit_exceeded": 429,
    "volume_busy": 409,
    "volume_error": 500,
    "database_busy": 503,
    # desktop (docs/desktop.md)
    "desktop_not_available": 409,
    "desktop_unavailable": 503,
    "desktop_command_failed": 422,
    "desktop_raw_vnc_disabled": 403,
    "stream_not_started": 409,
    "recording_conflict": 409,
    # templates (docs/templates.md)
    "template_in_use": 409,
    "template_build_not_promotable": 409,
    "template_not_ready": 503,
    "template_start_failed": 503,
    # code interpreter (docs/code-interpreter.md)
    "code_interpreter_unavailable": 409,
    "kernel_start_failed": 503,
    "kernel_unavailable": 503,
    "preview_unavailable": 415,
    # warm pools (docs/warm-pools.md)
    "warm_pool_unavailable": 409,
}

# An upload refused (code `file_upload_error`) answers by its reason (docs/api.md §2.6).
UPLOAD_STATUS_BY_REASON = {
    "size_limit_exceeded": 413,
    "target_conflict": 409,
    "insufficient_staging_space": 507,
    "part_out_of_range": 416,
    "missing_parts": 409,
    "upload_aborted": 410,
    "upload_expired": 410,
    "upload_already_completed": 409,
}


class ApiError(DomainError):
    """Raise anywhere under a /v1 view; the decorator turns it into the envelope. Only the
    `/v1` faces raise it, when the status is theirs to choose (domain code raises
    DomainError)."""

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
        super().__init__(
            code,
            message,
            details=details,
            retryable=retryable,
            suggested_action=suggested_action,
            error_detail=error_detail,
        )
        self.status = status or _status_for(code)
        self.headers = headers or {}


def status_for(error: DomainError) -> int:
    """The HTTP status of an error on `/v1`."""
    if isinstance(error, ApiError):
        return error.status
    if error.code == "file_upload_error" and error.error_detail:
        return UPLOAD_STATUS_BY_REASON.get(str(error.error_detail.get("reason")), 400)
    return _status_for(error.code)


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


def error_response(request, error: DomainError) -> JsonResponse:
    body: dict[str, Any] = {
        "error": error.message,
        "code": error.code,
        "request_id": getattr(request, "request_id", None),
    }
    for key in ("retryable", "suggested_action", "details", "error_detail"):
        value = getattr(error, key)
        if value is not None:
            body[key] = value
    response = JsonResponse(body, status=status_for(error))
    for name, value in getattr(error, "headers", {}).items():
        response[name] = value
    return response


def api_error(request, code: str, message: str, **kwargs: Any) -> JsonResponse:
    return error_response(request, ApiError(code, message, **kwargs))


def not_found(what: str = "resource", code: str = "not_found") -> ApiError:
    return ApiError(code, f"{what} not found")
