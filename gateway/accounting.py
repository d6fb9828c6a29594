"""Per-grant usage counters, added up in memory and written in batches with F() increments.

No request writes to the database: a background task flushes about once a second,
and `flush()` can be called on demand (the grants list does, so counters are fresh).
Counting is called from the event loop, flushing from threads; a lock guards the swap.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from console import live
from console.models import PreviewGrant

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


# Per grant, a plain list (cheapest to bump on every request): counts, then times as
# time.time() floats, turned into datetimes only when written.
# CLIENT: (ip, user agent, transport) of the batch's first use, for the audit log.
USE, HTTP, WEBSOCKET, BYTES_IN, BYTES_OUT, FIRST, LAST, ERROR, ERROR_AT, CLIENT = range(10)
MAX_USER_AGENT = 300
# Grants whose first use is known to be in the audit log: no more queries for them.
_first_use_logged: set[str] = set()
MAX_FIRST_USE_MEMORY = 100_000


Usage = list[Any]  # int counts, float times, the error code, the first client


def _new() -> Usage:
    return [0, 0, 0, 0, 0, 0.0, 0.0, "", 0.0, None]


def _merge(older: Usage, newer: Usage) -> Usage:
    merged = [older[i] + newer[i] for i in range(FIRST)]
    merged += [older[FIRST] or newer[FIRST], newer[LAST] or older[LAST]]
    merged += newer[ERROR:CLIENT] if newer[ERROR_AT] else older[ERROR:CLIENT]
    merged.append(older[CLIENT] or newer[CLIENT])
    return merged


def _client(scope: Mapping[str, Any], transport: str) -> tuple[str, str, str]:
    """Who used the grant: peer address and User-Agent (read once per grant per batch)."""
    agent = b""
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            agent = value
            break
    peer = (scope.get("client") or ("", 0))[0] or ""
    return peer, agent.decode("latin-1")[:MAX_USER_AGENT], transport


_pending: dict[str, Usage] = {}
_lock = threading.Lock()
_flusher: asyncio.Task[None] | None = None
_flusher_loop: asyncio.AbstractEventLoop | None = None


def count_use(
    grant_id: str,
    *,
    http: bool = False,
    websocket: bool = False,
    scope: Mapping[str, Any] | None = None,
) -> None:
    """A grant admitted a request (http) or a WebSocket connection."""
    now = time.time()
    with _lock:
        usage = _pending.get(grant_id)
        if usage is None:
            usage = _pending[grant_id] = _new()
        if not usage[FIRST]:
            usage[FIRST] = now
            if scope is not None and grant_id not in _first_use_logged:
                usage[CLIENT] = _client(scope, "websocket" if websocket else "http")
        usage[USE] += 1
        if http:
            usage[HTTP] += 1
        if websocket:
            usage[WEBSOCKET] += 1
        usage[LAST] = now


def count_bytes(grant_id: str, inbound: int = 0, outbound: int = 0) -> None:
    """Bytes client->upstream (in) and upstream->client (out)."""
    with _lock:
        usage = _pending.get(grant_id)
        if usage is None:
            usage = _pending[grant_id] = _new()
        usage[BYTES_IN] += inbound
        usage[BYTES_OUT] += outbound


def count_error(grant_id: str, code: str) -> None:
    with _lock:
        usage = _pending.get(grant_id)
        if usage is None:
            usage = _pending[grant_id] = _new()
        usage[ERROR], usage[ERROR_AT] = code, time.time()


def flush() -> int:
    """Write what is pending (sync; call from a thread or a sync view). Returns grants written."""
    global _pending
    with _lock:
        batch, _pending = _pending, {}
    written = 0
    try:
        for grant_id, usage in batch.items():
            _write(grant_id, usage)
            written += 1
    except Exception:
        # Keep what was not written (and the failed one) for the next flush.
        with _lock:
            for grant_id, usage in list(batch.items())[written:]:
                _pending[grant_id] = _merge(usage, _pending.get(grant_id) or _new())
        raise
    if batch:
        _tell_pages(list(batch))
    return written


def _tell_pages(grant_ids: list[str]) -> None:
    """Open grant tables of these grants' projects refresh their counters (console/live.py)."""
    touched: dict[str, set[str]] = {}
    rows = PreviewGrant.objects.filter(public_id__in=grant_ids).values_list(
        "project__public_id", "sandbox__public_id"
    )
    for project_id, sandbox_id in rows:
        touched.setdefault(project_id, set()).add(sandbox_id)
    for project_id, sandbox_ids in touched.items():
        live.grants_changed(project_id, sandbox_ids)


def _when(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)


def _write(grant_id: str, usage: Usage) -> None:
    updates = {
        "use_count": F("use_count") + usage[USE],
        "http_request_count": F("http_request_count") + usage[HTTP],
        "websocket_connection_count": F("websocket_connection_count") + usage[WEBSOCKET],
        "bytes_in_count": F("bytes_in_count") + usage[BYTES_IN],
        "bytes_out_count": F("bytes_out_count") + usage[BYTES_OUT],
        "updated_at": timezone.now(),
    }
    if usage[FIRST]:
        updates["first_used_at"] = Coalesce(
            F("first_used_at"), Value(_when(usage[FIRST]), output_field=DateTimeField())
        )
    if usage[LAST]:
        updates["last_used_at"] = _when(usage[LAST])
    if usage[ERROR_AT]:
        updates["last_error_code"] = usage[ERROR]
        updates["last_error_at"] = _when(usage[ERROR_AT])
    PreviewGrant.objects.filter(public_id=grant_id).update(**updates)
    if usage[CLIENT] and grant_id not in _first_use_logged:
        try:
            _log_first_use(grant_id, _when(usage[FIRST]), *usage[CLIENT])
        except Exception:
            # The counters are written; a failed audit row is tried again on a later use.
            log.warning("could not audit the first use of %s", grant_id, exc_info=True)


def _log_first_use(grant_id: str, when: datetime, ip: str, agent: str, transport: str) -> None:
    """The grant's first use into the audit log, once across every gateway process: the
    conditional UPDATE elects the writer."""
    from console.audit import service as audit

    with transaction.atomic():
        won = PreviewGrant.objects.filter(
            public_id=grant_id, first_use_audited_at__isnull=True
        ).update(first_use_audited_at=when)
        if won:
            grant = PreviewGrant.objects.select_related("project__team", "sandbox").get(
                public_id=grant_id
            )
            _audit_first_use(audit, grant, ip, agent, transport)
    if len(_first_use_logged) >= MAX_FIRST_USE_MEMORY:
        _first_use_logged.clear()
    _first_use_logged.add(grant_id)


def _audit_first_use(
    audit: ModuleType, grant: PreviewGrant, ip: str, agent: str, transport: str
) -> None:
    grant_id = grant.public_id
    audit.record(
        "preview_grant.first_use",
        team=grant.project.team,
        actor_label="preview visitor",
        target_type="preview_grant",
        target_id=grant_id,
        ip=ip or None,
        user_agent=agent,
        transport=transport,
        sandbox_id=grant.sandbox.public_id,
        port=grant.port,
    )


_flush_async = database_sync_to_async(flush)


def ensure_flusher() -> None:
    global _flusher, _flusher_loop
    loop = asyncio.get_running_loop()
    if _flusher_loop is not loop or _flusher is None or _flusher.done():
        _flusher = loop.create_task(_flush_forever(), name="preview-accounting")
        _flusher_loop = loop


async def _flush_forever() -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        if _pending:
            try:
                await _flush_async()
            except Exception:
                log.exception("could not flush preview usage counters; will retry")


@atexit.register
def _flush_at_exit() -> None:
    if _pending:
        try:
            flush()
        except Exception:
            log.warning("preview usage counters lost at exit")


async def stop_flusher() -> None:
    """Stop the background task and write what is pending."""
    global _flusher, _flusher_loop
    task, _flusher, _flusher_loop = _flusher, None, None
    if task is not None and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if _pending:
        await _flush_async()
