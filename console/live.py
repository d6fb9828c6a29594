"""Pushing "this part of the page changed" to open console pages over the channel layer.

Pages do not poll. A page with live parts opens one WebSocket (console/live_ws.py),
which joins a channel-layer group; whoever changes something sends one message to
that group, and the page re-fetches only the part that changed. While nothing
changes, an open page costs no request and no query.

Groups:
- `lifecycle.<project>` (console/sandboxes/lifecycle.py): every lifecycle event; a sandbox
  page keeps those about its sandbox. Every state change records one.
- `grants.<project>`: preview grants of the project were created, revoked or had
  their usage counters written; the message names the sandboxes concerned.

Sending works from any thread. With the in-memory layer a group lives in the
server's event loop, and asyncio queues are not thread-safe, so a send from a
plain thread (the worker, a gateway flush) is handed to that loop; with Redis the
same path is merely one hop shorter than async_to_sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

GRANTS_CHANGED = "grants.changed"
# How long a thread waits for the server loop to take its message.
HANDOFF_SECONDS = 2.0

_server_loop: asyncio.AbstractEventLoop | None = None


def remember_server_loop() -> None:
    """Called by live consumers as they connect: the loop in-memory groups live in."""
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def grants_group(project_public_id: str) -> str:
    return f"grants.{project_public_id}"


def group_send(group: str, message: dict[str, Any]) -> None:
    """Best effort: a lost message only delays a refresh until the next change."""
    group_send_all(group, [message])


def group_send_all(group: str, messages: list[dict[str, Any]]) -> None:
    """`group_send` of several messages, in order, with one hand-off to the server's loop
    (each hand-off is a wait for that loop; a warm-pool checkout sends two events)."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send() -> None:
        for message in messages:
            await layer.group_send(group, message)

    loop = _server_loop
    try:
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.create_task(send())
                return
            future = asyncio.run_coroutine_threadsafe(send(), loop)
            future.result(timeout=HANDOFF_SECONDS)
            return
        async_to_sync(send)()
    except Exception:
        log.warning("could not send %s to %s", messages[0].get("type"), group, exc_info=True)


def grants_changed(project_public_id: str, sandbox_ids: Iterable[str]) -> None:
    group_send(
        grants_group(project_public_id),
        {"type": GRANTS_CHANGED, "sandbox_ids": sorted(set(sandbox_ids))},
    )
