"""Field projection (`?fields=id,status`) for the routes that accept it (api-contract 1.11)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest

from console.api.errors import ApiError


def requested_fields(request: HttpRequest, allowed: Sequence[str]) -> list[str] | None:
    """The de-duplicated field names asked for, or None when `fields` is absent."""
    raw = request.GET.get("fields")
    if raw is None:
        return None
    names = list(dict.fromkeys(f.strip() for f in raw.split(",") if f.strip()))
    unknown = [f for f in names if f not in allowed]
    if unknown or not names:
        raise ApiError(
            "invalid_fields",
            f"Unknown field(s): {', '.join(unknown) or '(none given)'}",
            details={"allowed": list(allowed)},
        )
    return names


def project_fields(body: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return body
    return {name: body.get(name) for name in fields}
