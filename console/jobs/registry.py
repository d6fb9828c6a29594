"""Which function runs a job kind. Modules register at import time; `load` imports
the modules that hold jobs so a worker knows every kind before it claims one."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TaskFunc = Callable[[dict[str, Any]], Any]
TickFunc = Callable[[], Any]

# Modules whose import registers jobs.
JOB_MODULES = (
    "console.sandboxes.jobs",
    "console.sandboxes.uploads",
    "console.previews.service",
    "console.webhooks.delivery",
    "console.agents.jobs",
    "console.sandbox_templates.jobs",
    "console.code_interpreter.jobs",
    "console.warm_pools.jobs",
)


@dataclass(frozen=True)
class Periodic:
    name: str
    every: float
    func: TickFunc


TASKS: dict[str, TaskFunc] = {}
PERIODIC: dict[str, Periodic] = {}
STARTUP: list[tuple[str, TickFunc]] = []
# Ticks every worker process runs itself (work on this host's runtime), not via the table.
EVERY_PROCESS: dict[str, Periodic] = {}


def task(kind: str) -> Callable[[TaskFunc], TaskFunc]:
    def register(func: TaskFunc) -> TaskFunc:
        TASKS[kind] = func
        return func

    return register


def periodic(name: str, every: float) -> Callable[[TickFunc], TickFunc]:
    def register(func: TickFunc) -> TickFunc:
        PERIODIC[name] = Periodic(name, every, func)
        return func

    return register


def every_process(name: str, every: float) -> Callable[[TickFunc], TickFunc]:
    """Like `periodic`, but run by every worker process on its own clock: for work on
    what this host holds (its runtime's files), which a worker elsewhere cannot do."""

    def register(func: TickFunc) -> TickFunc:
        EVERY_PROCESS[name] = Periodic(name, every, func)
        return func

    return register


def on_startup(name: str) -> Callable[[TickFunc], TickFunc]:
    def register(func: TickFunc) -> TickFunc:
        if all(existing != name for existing, _ in STARTUP):
            STARTUP.append((name, func))
        return func

    return register


def load() -> None:
    for module in JOB_MODULES:
        importlib.import_module(module)
