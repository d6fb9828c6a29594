"""How /v1 list routes page (docs/pagination.md).

A page-aware caller sends `limit` and/or `next_token` and gets one keyset page,
`{items, next_token, has_next}`, the shape /v1/sandboxes already has. The 0.1.9
client cannot follow a token on the routes whose contract shape is a bare list or
`{items}` (snapshots, keys, preview grants), so a call without either parameter
gets the whole list, as the contract promises, up to LIST_UNPAGED_MAX rows; a
longer list is refused with `result_too_large` rather than cut short in silence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import models
from django.http import HttpRequest

from console.api.auth import query_int
from console.api.errors import ApiError
from console.paging import Keyset, Page, paginate

T = TypeVar("T", bound=models.Model)

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def wants_page(request: HttpRequest) -> bool:
    return bool(request.GET.get("limit") or request.GET.get("next_token"))


def api_page(
    request: HttpRequest, rows: models.QuerySet[T], keyset: Keyset, *, ascending: bool = False
) -> Page[T]:
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    return paginate(
        rows, keyset, limit=limit, after=request.GET.get("next_token") or None, ascending=ascending
    )


def page_body(page: Page[T], shape: Callable[[T], Any]) -> dict[str, Any]:
    return {
        "items": [shape(row) for row in page.items],
        "next_token": page.next_cursor,
        "has_next": page.has_next,
    }


def whole_list(rows: models.QuerySet[T], keyset: Keyset, *, what: str) -> list[T]:
    """Every row, newest first, for a caller that cannot page; refused when too many."""
    ceiling = settings.LIST_UNPAGED_MAX
    found = list(rows.order_by(f"-{keyset.column}", "-pk")[: ceiling + 1])
    if len(found) > ceiling:
        raise ApiError(
            "result_too_large",
            f"More than {ceiling} {what}: ask for pages with limit and next_token",
            suggested_action="Send limit=100, then next_token from each answer until has_next "
            "is false.",
            details={"max_unpaged": ceiling, "max_limit": MAX_PAGE},
        )
    return found
