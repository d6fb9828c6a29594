"""Keyset pagination: every list, in the console and in /v1, is read one index range at a time.

A list is ordered by (a sort column, the primary key), newest first unless asked
otherwise, and a page ends with a cursor that names its last row's pair. The next
page is "rows strictly after that pair", a range scan on a (scope, sort column, id)
index, so page 1,500 costs what page 1 costs (OFFSET would read and skip every row
before it). Cursors are opaque base64url strings that also name the list they came
from, so a cursor of one list handed to another is refused, never misread.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.core.exceptions import BadRequest, ValidationError
from django.db import models
from django.http import HttpRequest

from console.errors import DomainError

T = TypeVar("T", bound=models.Model)

# One cursor is a few dozen bytes; anything much longer was not made here.
MAX_CURSOR_CHARS = 512


class BadCursor(DomainError):
    """A cursor this server did not give out for this list (`invalid_request`)."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_request", message)


@dataclass(frozen=True)
class Keyset:
    """How one list is ordered: `kind` names it inside its cursors."""

    kind: str
    column: str  # the sort column; ties are broken by the primary key

    def fields(
        self, model: type[models.Model]
    ) -> tuple[models.Field[Any, Any], models.Field[Any, Any]]:
        # get_field may answer a relation for other names; a sort column is a concrete field.
        return model._meta.get_field(self.column), model._meta.pk  # type: ignore[return-value]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    # Continue in the list's order (older rows, when newest first): None on the last page.
    next_cursor: str | None
    # Back towards the start (the console's "newer" link): None on the first page.
    prev_cursor: str | None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | str):
        return value
    return str(value)  # UUIDs


def encode(keyset: Keyset, row: models.Model) -> str:
    column, pk = keyset.fields(type(row))
    values = [_plain(getattr(row, column.attname)), _plain(getattr(row, pk.attname))]
    raw = json.dumps([keyset.kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(keyset: Keyset, model: type[models.Model], cursor: str) -> tuple[Any, Any]:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadCursor("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, first, second = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor("cursor is not one this server gave out") from None
    if kind != keyset.kind:
        raise BadCursor("cursor belongs to another list")
    column, pk = keyset.fields(model)
    try:
        values = column.to_python(first), pk.to_python(second)
    except (ValidationError, TypeError, ValueError):
        raise BadCursor("cursor is not one this server gave out") from None
    if any(v is None for v in values):
        raise BadCursor("cursor is not one this server gave out")
    return values


def _beyond(keyset: Keyset, value: Any, pk: Any, *, upward: bool) -> models.Q:
    """Rows strictly past (value, pk) in one direction, written so the sort column's
    bound is a plain range condition an index can seek to."""
    op = "gt" if upward else "lt"
    col = keyset.column
    return models.Q(**{f"{col}__{op}e": value}) & (
        models.Q(**{f"{col}__{op}": value}) | models.Q(**{f"pk__{op}": pk})
    )


def _ordered(rows: models.QuerySet[T], keyset: Keyset, *, upward: bool) -> models.QuerySet[T]:
    sign = "" if upward else "-"
    return rows.order_by(f"{sign}{keyset.column}", f"{sign}pk")


def paginate(
    rows: models.QuerySet[T],
    keyset: Keyset,
    *,
    limit: int,
    after: str | None = None,
    before: str | None = None,
    ascending: bool = False,
) -> Page[T]:
    """One page of `rows` in keyset order: the first, the one after `after`, or the one
    before `before` (at most one of them). Raises BadCursor for a foreign cursor."""
    if after and before:
        raise BadCursor("give either a next or a previous cursor, not both")
    model = rows.model
    if before:
        value, pk = decode(keyset, model, before)
        # Walk back against the list's order, then put the rows in list order again.
        back = _ordered(
            rows.filter(_beyond(keyset, value, pk, upward=not ascending)),
            keyset,
            upward=not ascending,
        )
        found = list(back[: limit + 1])
        has_prev = len(found) > limit
        items = list(reversed(found[:limit]))
        return Page(
            items=items,
            next_cursor=encode(keyset, items[-1]) if items else None,
            prev_cursor=encode(keyset, items[0]) if has_prev and items else None,
        )
    if after:
        value, pk = decode(keyset, model, after)
        rows = rows.filter(_beyond(keyset, value, pk, upward=ascending))
    found = list(_ordered(rows, keyset, upward=ascending)[: limit + 1])
    items = found[:limit]
    return Page(
        items=items,
        next_cursor=encode(keyset, items[-1]) if len(found) > limit else None,
        prev_cursor=encode(keyset, items[0]) if after and items else None,
    )


def console_page(
    request: HttpRequest,
    rows: models.QuerySet[T],
    keyset: Keyset,
    *,
    size: int,
    ascending: bool = False,
) -> tuple[Page[T], str]:
    """The page a console list asks for with ?after= or ?before=, and the rest of its
    query string (the filters) for the page links. A foreign cursor is a 400."""
    try:
        page = paginate(
            rows,
            keyset,
            limit=size,
            after=request.GET.get("after") or None,
            before=request.GET.get("before") or None,
            ascending=ascending,
        )
    except BadCursor as exc:
        raise BadRequest(
            f"This page link is not valid ({exc}); start from the first page."
        ) from None
    query = request.GET.copy()
    for name in ("after", "before", "page"):
        query.pop(name, None)
    return page, query.urlencode()
