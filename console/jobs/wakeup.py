"""Waking idle workers when a job is queued.

Workers of the process that queued a job wake at commit (`queue.enqueue`). On
PostgreSQL, workers in other processes and on other servers are woken too: `enqueue`
sends `NOTIFY console_jobs` inside the caller's transaction (PostgreSQL delivers it
only if and when that transaction commits), and each worker process keeps one
connection that LISTENs and wakes its threads. Without it (SQLite) they find the job
at their next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

log = logging.getLogger(__name__)

CHANNEL = "console_jobs"
RECONNECT_SECONDS = 5.0
# The listener's own connection (one per worker process, outside the request pool): named
# so that pg_stat_activity tells it apart (README "Sizing PostgreSQL" counts it).
APPLICATION_NAME = "nullspace-job-listener"


def supported() -> bool:
    return connection.vendor == "postgresql"


def notify() -> None:
    """Tell other processes' workers (part of the current transaction)."""
    if supported():
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")


def listen_forever(stop: threading.Event, wake: Callable[[], None]) -> None:
    """Run in a thread of each worker process (PostgreSQL only): call `wake` on every
    notification; reconnect after a lost connection; return when `stop` is set."""
    import psycopg

    params = _conninfo()
    while not stop.is_set():
        try:
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                wake()  # whatever was queued while we were not listening
                while not stop.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        wake()
        except psycopg.Error as exc:
            log.warning("job wake-up listener lost its connection (%s); polling meanwhile", exc)
            stop.wait(RECONNECT_SECONDS)


def _conninfo() -> dict[str, Any]:
    settings = connection.settings_dict
    params: dict[str, Any] = {
        "dbname": settings["NAME"],
        "connect_timeout": 10,
        "application_name": APPLICATION_NAME,
    }
    for key, name in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
        if settings.get(key):
            params[name] = settings[key]
    if settings.get("PORT"):
        params["port"] = int(settings["PORT"])
    return params
