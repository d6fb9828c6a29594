"""Where slow agent work runs: a bounded pool of threads in the serving process.

Runs, service starts and artifact builds are submitted here by the API after their row
is committed; the request answers at once. Env values travel only in memory, from the
request to the thread. Work found unfinished at start-up (the process that held it
stopped) is marked failed by `console.agents.jobs`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction

log = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.AGENT_MAX_CONCURRENT, thread_name_prefix="agent"
            )
        return _pool


def submit(func: Callable[..., None], *args: Any) -> None:
    """Run `func(*args)` on the pool once the current transaction commits."""

    def start() -> None:
        future: Future = _executor().submit(_guarded, func, *args)
        future.add_done_callback(lambda f: None)

    transaction.on_commit(start)


def _guarded(func: Callable[..., None], *args: Any) -> None:
    close_old_connections()
    try:
        func(*args)
    except Exception:
        log.exception("agent work %s failed", getattr(func, "__name__", func))
    finally:
        close_old_connections()
