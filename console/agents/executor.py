"""Where slow agent work runs: a bounded pool of threads in the serving process.

Runs, service starts and artifact builds are submitted here by the API after their row
is committed; the request answers at once. Env values travel only in memory, from the
request to the thread. Rows record the process executing them (`runner_id`); work whose
process is gone is marked failed at start-up by `console.agents.jobs`.
"""

from __future__ import annotations

import logging
import os
import socket
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
        future: Future[None] = _executor().submit(_guarded, func, *args)
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


def runner_id() -> str:
    """This process, as recorded on the rows it executes."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_orphan(runner: str) -> bool:
    """True when the process that took this work is gone (on this host); another host's
    work, or a live process's, is not ours to judge."""
    host, _, pid = runner.rpartition(":")
    if not runner or not pid.isdigit():
        return True
    if host != socket.gethostname():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
