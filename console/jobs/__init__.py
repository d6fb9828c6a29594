"""The job system for slow and scheduled work (docs/jobs.md).

Register work with `@task(kind)` (one-shot jobs enqueued with `enqueue`),
`@periodic(name, every=seconds)` (one row per name, run by one worker at a time) or
`@on_startup(name)` (run once by every worker process when it starts).
"""

from __future__ import annotations

from console.jobs.queue import RetryLater, backoff_delay, enqueue
from console.jobs.registry import on_startup, periodic, task

__all__ = ["RetryLater", "backoff_delay", "enqueue", "on_startup", "periodic", "task"]
