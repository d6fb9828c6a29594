"""Which runtime instance owns a sandbox, and whether a create is still under way.

Several servers may share one database; each runs its sandboxes with its own runtime
(docs/runtime-ownership.md). A sandbox records its owner when it is created, and only
the owner reconciles it at start-up and acts on its timeouts. While a sandbox is
`creating` it also records the process making it (pid and that process's start time,
so a reused pid is not mistaken for it): when that process is gone, the create was
interrupted (`kill -9`, a crash) and the owner marks it failed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket

from django.conf import settings


@functools.cache
def this_instance() -> str:
    """This server's owner name: RUNTIME_INSTANCE, else host name + runtime root."""
    if settings.RUNTIME_INSTANCE:
        return settings.RUNTIME_INSTANCE[:100]
    root = hashlib.sha1(str(settings.RUNTIME_ROOT).encode()).hexdigest()[:12]
    return f"{socket.gethostname()[:80]}:{root}"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def this_process() -> str:
    pid = os.getpid()
    return f"{pid}:{_start_time(pid) or 0}"


def process_alive(marker: str) -> bool:
    """Whether the process named by a `this_process()` marker still runs (on this host)."""
    pid, _, started = marker.partition(":")
    if not pid.isdigit():
        return False
    return _start_time(int(pid)) == started
