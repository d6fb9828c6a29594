"""The job system for slow and scheduled work (docs/jobs.md).

Register work with `@task(kind)` (one-shot jobs enqueued with `enqueue`),
`@periodic(name, every=seconds)` (one row per name, run by one worker at a time),
`@every_process(name, every=seconds)` (run by each worker process on its own, for work
on this host's runtime) or `@on_startup(name)` (once by every worker process at start).
"""

from __future__ import annotations

from console.jobs.queue import RetryLater, backoff_delay, enqueue
from console.jobs.registry import every_process, on_startup, periodic, task

__all__ = [
    "RetryLater",
    "backoff_delay",
    "enqueue",
    "every_process",
    "on_startup",
    "periodic",
    "task",
]
