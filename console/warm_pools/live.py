"""Telling open warm-pool pages that a pool changed (console/live.py's pattern): state,
counters, a sandbox warming, ready, checked out or destroyed. The page re-fetches its
table once per message; nothing polls. The socket is console/warm_pools/live_ws.py."""

from __future__ import annotations

from collections.abc import Iterable

from console import live
from console.models import Project

CHANGED = "warm_pools.changed"


def group(project_public_id: str) -> str:
    return f"warm_pools.{project_public_id}"


def pools_changed(project: Project, pool_ids: Iterable[str]) -> None:
    live.group_send(group(project.public_id), {"type": CHANGED, "pool_ids": sorted(set(pool_ids))})
