"""Idempotency-Key handling (docs/api.md §1.3): the first answer to a key is replayed.

A record is (API key, Idempotency-Key, route). While the first request runs, a retry
with the same key waits for it, then gets the same answer. A failed first attempt
(an ApiError) forgets the key so that a retry does the work again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.http import JsonResponse

from console.api.auth import ApiRequest
from console.api.errors import ApiError
from console.models import IdempotencyRecord

WAIT_FOR_FIRST_SECONDS = 60
# Never stored: a replay mints its own (see `on_replay`).
SECRET_KEYS = ("traffic_access_token",)


def idempotent(
    request: ApiRequest,
    produce: Callable[[], tuple[int, Any]],
    *,
    on_replay: Callable[[Any], Any] | None = None,
) -> JsonResponse:
    """Answer `produce()` once per key; replay its (status, body) for the same key."""
    key = (request.headers.get("Idempotency-Key") or "").strip()[:200]
    if not key:
        status, body = produce()
        return JsonResponse(body, status=status, safe=False)
    api_key = request.api_key
    route = request.path[:300]
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(api_key=api_key, key=key, route=route)
    except IntegrityError:
        return _replay(api_key, key, route, on_replay)
    try:
        status, body = produce()
    except BaseException:
        record.delete()
        raise
    stored = body
    if isinstance(body, dict):
        stored = {k: v for k, v in body.items() if k not in SECRET_KEYS}
    record.status_code = status
    record.response_body = json.loads(json.dumps(stored))
    record.save(update_fields=["status_code", "response_body"])
    return JsonResponse(body, status=status, safe=False)


def _replay(api_key, key: str, route: str, on_replay) -> JsonResponse:
    deadline = time.monotonic() + WAIT_FOR_FIRST_SECONDS
    while True:
        record = IdempotencyRecord.objects.filter(api_key=api_key, key=key, route=route).first()
        if record is None:
            # The first attempt failed and forgot the key: tell the client to retry.
            raise ApiError(
                "transition_in_progress",
                "An earlier request with this Idempotency-Key failed; retry it",
                status=409,
                retryable=True,
            )
        if record.status_code is not None:
            body = record.response_body
            if on_replay is not None:
                body = on_replay(body)
            response = JsonResponse(body, status=record.status_code, safe=False)
            response["Idempotent-Replayed"] = "true"
            return response
        if time.monotonic() > deadline:
            raise ApiError(
                "transition_in_progress",
                "A request with this Idempotency-Key is still running",
                status=409,
                retryable=True,
            )
        time.sleep(0.1)
