"""Background work whose state lives in the database (sandbox timeouts, reconciliation).

`run_forever` is started in a thread by `manage.py serve` and runs alone under
`manage.py worker`. Each job is a function `tick() -> None` registered in JOBS;
a job's failure is logged and never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections

log = logging.getLogger(__name__)

# (name, interval seconds, function). Modules append their jobs at import time via `job`.
JOBS: list[tuple[str, float, Callable[[], None]]] = []
STARTUP: list[tuple[str, Callable[[], None]]] = []


def job(name: str, every: float) -> Callable:
    def register(func: Callable[[], None]) -> Callable[[], None]:
        JOBS.append((name, every, func))
        return func

    return register


def on_startup(name: str) -> Callable:
    def register(func: Callable[[], None]) -> Callable[[], None]:
        STARTUP.append((name, func))
        return func

    return register


def _load_jobs() -> None:
    # Importing these modules registers their jobs.
    import importlib

    for module in ("console.sandbox_jobs", "console.uploads", "console.agents.jobs"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def run_forever(stop: threading.Event) -> None:
    _load_jobs()
    for name, func in STARTUP:
        _run(name, func)
    next_run = {name: 0.0 for name, _, _ in JOBS}
    import time

    while not stop.is_set():
        now = time.monotonic()
        for name, every, func in JOBS:
            if now >= next_run[name]:
                _run(name, func)
                next_run[name] = time.monotonic() + every
        stop.wait(0.25)


def _run(name: str, func: Callable[[], None]) -> None:
    close_old_connections()
    try:
        func()
    except Exception:
        log.exception("worker job %s failed", name)
    finally:
        close_old_connections()
