"""GET /v1/lifecycle/events, /v1/sandboxes/{id}/lifecycle, /v1/snapshots/{id}/lifecycle
(docs/api.md §7.2): `{events, offset, limit, has_more}`, plus `next_cursor`.

The client pages with `offset`; OFFSET reads and skips every row before the page, so
it is honoured only up to MAX_OFFSET. Each answer carries `next_cursor` (as the
contract's log pages do): `cursor=<it>` continues from the last event by a keyset
range on (project, seq, id) at any depth. Webhooks are not served here."""

from __future__ import annotations

from datetime import datetime

from django.http import JsonResponse
from django.urls import path

from console.api.auth import READ, ApiRequest, api_key_required, methods, query_int
from console.api.errors import ApiError
from console.models import EventStatus, Operation
from console.paging import Keyset, encode, paginate
from console.sandboxes import lifecycle
from console.sandboxes import service as sandboxes

MAX_LIMIT = 500
MAX_OFFSET = 10_000
KEYSET = Keyset("event", "seq")


def _time(request: ApiRequest, name: str) -> datetime | None:
    raw = request.GET.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError("invalid_request", f"{name} must be an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ApiError("invalid_request", f"{name} must carry a time zone (e.g. Z)")
    return value


def _choice(request: ApiRequest, name: str, allowed: list[str]) -> str | None:
    value = request.GET.get(name) or None
    if value is not None and value not in allowed:
        raise ApiError("invalid_request", f"{name} must be one of {', '.join(allowed)}")
    return value


def _answer(request: ApiRequest, **scope: str) -> JsonResponse:
    if request.GET.get("audience") not in (None, "", "customer"):
        raise ApiError("invalid_request", "Only audience=customer is served on public routes")
    offset = query_int(request, "offset", 0, 0, 10**9)
    cursor = request.GET.get("cursor") or None
    if cursor and offset:
        raise ApiError("invalid_request", "Send either cursor or offset, not both")
    if offset > MAX_OFFSET:
        raise ApiError(
            "invalid_request",
            f"offset above {MAX_OFFSET} is not served: continue with cursor=<next_cursor> "
            "from the previous page",
            details={"max_offset": MAX_OFFSET},
        )
    limit = query_int(request, "limit", 50, 0, MAX_LIMIT) or 50
    order = _choice(request, "order", ["asc", "desc"]) or "desc"
    filters = {
        key: request.GET.get(key) or None
        for key in ("sandbox_id", "snapshot_id", "source_sandbox_id", "target_sandbox_id")
    }
    filters.update(scope)
    rows = lifecycle.events_for(
        request.project,
        operation=_choice(request, "operation", Operation.values),
        status=_choice(request, "status", EventStatus.values),
        since=_time(request, "from"),
        until=_time(request, "to"),
        **filters,
    )
    ascending = order == "asc"
    if offset:
        ordering = ["seq", "pk"] if ascending else ["-seq", "-pk"]
        found = list(rows.order_by(*ordering)[offset : offset + limit + 1])
        events = found[:limit]
        next_cursor = encode(KEYSET, events[-1]) if len(found) > limit else None
    else:
        page = paginate(rows, KEYSET, limit=limit, after=cursor, ascending=ascending)
        events, next_cursor = page.items, page.next_cursor
    return JsonResponse(
        {
            "events": [lifecycle.event_to_dict(e) for e in events],
            "offset": offset,
            "limit": limit,
            "has_more": next_cursor is not None,
            "next_cursor": next_cursor,
        }
    )


@api_key_required(READ)
def list_events(request: ApiRequest) -> JsonResponse:
    return _answer(request)


@api_key_required(READ)
def sandbox_events(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id, include_gone=True)
    return _answer(request, about_sandbox=sandbox.public_id)


@api_key_required(READ)
def snapshot_events(request: ApiRequest, snapshot_id: str) -> JsonResponse:
    snapshot = sandboxes.get_snapshot(request.project, snapshot_id)
    return _answer(request, snapshot_id=snapshot.public_id)


urlpatterns = [
    path("lifecycle/events", methods(GET=list_events), name="v1-lifecycle-events"),
    path(
        "sandboxes/<str:sandbox_id>/lifecycle",
        methods(GET=sandbox_events),
        name="v1-sandbox-lifecycle",
    ),
    path(
        "snapshots/<str:snapshot_id>/lifecycle",
        methods(GET=snapshot_events),
        name="v1-snapshot-lifecycle",
    ),
]
