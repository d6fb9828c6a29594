"""Reading a /v1 request's JSON body and parameters, refusing what no handler should see.

The rules (docs/limits.md): a body over API_JSON_MAX_BYTES is a 413 before a byte is
parsed; a JSON route takes application/json (or no Content-Type) and nothing else
(415); the body is one object, at most MAX_DEPTH levels deep, with finite numbers,
integers within 64 bits, and strings without NUL or lone surrogates (which no file
name, database column or UTF-8 encoder accepts). Path and query parameters follow the
same string rules and a length bound. Every refusal is an ApiError (the envelope).
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from console.api.errors import ApiError

MAX_DEPTH = 32
MAX_PARAM_CHARS = 4096
INT_BOUND = 2**63
JSON_TYPES = ("", "application/json")


def _bad(message: str) -> ApiError:
    return ApiError("invalid_request", message)


def _reject_constant(name: str) -> Any:
    raise _bad(f"Request body has {name}: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _bad(f"Request body has {text}: numbers must be finite")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise _bad("Request body has an integer outside 64 bits")
    value = int(text)
    if not -INT_BOUND <= value < INT_BOUND:
        raise _bad("Request body has an integer outside 64 bits")
    return value


def string_problem(value: str) -> str | None:
    """Why this string cannot be accepted, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def check_tree(value: Any) -> None:
    """Depth, number and string rules over parsed JSON, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            problem = string_problem(node)
            if problem:
                raise _bad(f"A string in the request body {problem}")
        elif isinstance(node, float) and not math.isfinite(node):
            raise _bad("Request body has a number that is not finite")
        elif isinstance(node, int) and not isinstance(node, bool):
            if not -INT_BOUND <= node < INT_BOUND:
                raise _bad("Request body has an integer outside 64 bits")
        elif isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise _bad(f"Request body is nested deeper than {MAX_DEPTH} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((child, depth + 1))


def content_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _bad("Content-Length is not a number") from None
    if value < 0:
        raise _bad("Content-Length is negative")
    return value


def too_large(limit: int) -> ApiError:
    return ApiError(
        "payload_too_large",
        f"Request body is larger than {limit} bytes",
        details={"limit_bytes": limit},
        suggested_action="Send files with the raw upload routes, not inside JSON.",
    )


def _empty_form(request: HttpRequest, raw: bytes) -> bool:
    """A multipart form with no parts at all (what some clients send for "no body")."""
    boundary = request.content_params.get("boundary") if request.content_params else None
    return (
        request.content_type == "multipart/form-data"
        and bool(boundary)
        and raw.strip() == f"--{boundary}--".encode()
    )


def read_json_body(request: HttpRequest) -> dict[str, Any]:
    limit = settings.API_JSON_MAX_BYTES
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)  # before reading or parsing anything
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large(limit)
    if not raw.strip() or _empty_form(request, raw):
        return {}
    if (request.content_type or "") not in JSON_TYPES:
        raise ApiError(
            "unsupported_media_type",
            f"This route takes a JSON body (Content-Type: application/json), "
            f"not {request.content_type}",
        )
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise _bad("Request body must be a JSON object")
    return value


def parse_json(raw: bytes | str) -> Any:
    """JSON text under the rules above (depth, finite numbers, clean strings)."""
    try:
        value = json.loads(
            raw,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise _bad(f"Request body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise _bad("Request body is not valid JSON") from None
    check_tree(value)
    return value


def check_params(request: HttpRequest, kwargs: dict[str, Any]) -> None:
    """Path and query parameters: bounded, without NUL or lone surrogates."""
    named = [(f"path parameter {k}", v) for k, v in kwargs.items() if isinstance(v, str)]
    for key, values in request.GET.lists():
        named.append(("a query parameter name", key))
        named += [(f"query parameter {key[:40]!r}", v) for v in values]
    for what, value in named:
        if len(value) > MAX_PARAM_CHARS:
            raise _bad(f"{what} is longer than {MAX_PARAM_CHARS} characters")
        problem = string_problem(value)
        if problem:
            raise _bad(f"{what} {problem}")
