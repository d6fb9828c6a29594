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
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from console.models import PreviewGrant

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


@dataclass
class Usage:
    use_count: int = 0
    http_request_count: int = 0
    websocket_connection_count: int = 0
    bytes_in_count: int = 0
    bytes_out_count: int = 0
    first_used_at: datetime | None = None
    last_used_at: datetime | None = None
    last_error_code: str = ""
    last_error_at: datetime | None = None

    def merge(self, newer: Usage) -> None:
        for name in (
            "use_count",
            "http_request_count",
            "websocket_connection_count",
            "bytes_in_count",
            "bytes_out_count",
        ):
            setattr(self, name, getattr(self, name) + getattr(newer, name))
        self.first_used_at = self.first_used_at or newer.first_used_at
        self.last_used_at = newer.last_used_at or self.last_used_at
        if newer.last_error_at:
            self.last_error_code, self.last_error_at = newer.last_error_code, newer.last_error_at


_pending: dict[str, Usage] = {}
_lock = threading.Lock()
_flusher: asyncio.Task | None = None


def _usage(grant_id: str) -> Usage:
    usage = _pending.get(grant_id)
    if usage is None:
        usage = _pending[grant_id] = Usage()
    return usage


def count_use(grant_id: str, *, http: bool = False, websocket: bool = False) -> None:
    """A grant admitted a request (http) or a WebSocket connection."""
    now = timezone.now()
    with _lock:
        usage = _usage(grant_id)
        usage.use_count += 1
        usage.http_request_count += int(http)
        usage.websocket_connection_count += int(websocket)
        usage.first_used_at = usage.first_used_at or now
        usage.last_used_at = now


def count_bytes(grant_id: str, inbound: int = 0, outbound: int = 0) -> None:
    """Bytes client->upstream (in) and upstream->client (out)."""
    with _lock:
        usage = _usage(grant_id)
        usage.bytes_in_count += inbound
        usage.bytes_out_count += outbound


def count_error(grant_id: str, code: str) -> None:
    with _lock:
        usage = _usage(grant_id)
        usage.last_error_code, usage.last_error_at = code, timezone.now()


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
                usage.merge(_pending.get(grant_id, Usage()))
                _pending[grant_id] = usage
        raise
    return written


def _write(grant_id: str, usage: Usage) -> None:
    updates = {
        "use_count": F("use_count") + usage.use_count,
        "http_request_count": F("http_request_count") + usage.http_request_count,
        "websocket_connection_count": F("websocket_connection_count")
        + usage.websocket_connection_count,
        "bytes_in_count": F("bytes_in_count") + usage.bytes_in_count,
        "bytes_out_count": F("bytes_out_count") + usage.bytes_out_count,
        "updated_at": timezone.now(),
    }
    if usage.first_used_at:
        updates["first_used_at"] = Coalesce(
            F("first_used_at"), Value(usage.first_used_at, output_field=DateTimeField())
        )
    if usage.last_used_at:
        updates["last_used_at"] = usage.last_used_at
    if usage.last_error_at:
        updates["last_error_code"] = usage.last_error_code
        updates["last_error_at"] = usage.last_error_at
    PreviewGrant.objects.filter(public_id=grant_id).update(**updates)


_flush_async = database_sync_to_async(flush)


def ensure_flusher() -> None:
    global _flusher
    loop = asyncio.get_running_loop()
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not loop:
        _flusher = loop.create_task(_flush_forever(), name="preview-accounting")


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
    global _flusher
    task, _flusher = _flusher, None
    if task is not None and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if _pending:
        await _flush_async()
