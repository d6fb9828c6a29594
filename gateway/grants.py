"""Grant state in this process: a cache of definitive answers, the revocation listener
that evicts it, and the open streams (responses, WebSockets) a revocation must end.

Each gateway process joins the channel-layer group lazily on its first request
(daphne sends no lifespan events). Answers are cached only while that
subscription is live, so a revocation can never be missed by a cached entry; a
database error is raised (the caller answers 503) and never cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from console.previews.service import (
    REVOCATION_GROUP,
    REVOCATION_MESSAGE,
    GrantState,
    load_grant_state,
)
from gateway import flight
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

# A safety net only: revocations arrive by fan-out; this bounds the damage of a lost message.
FOUND_TTL = 30.0
MISSING_TTL = 5.0
MAX_ENTRIES = 20_000
REJOIN_SECONDS = 600

_cache: dict[str, tuple[float, GrantState | None]] = {}
_revoked: dict[str, float] = {}  # grant id -> when to forget (covers a read racing the commit)
_watchers: dict[str, set[Callable[[], None]]] = {}
_loading: flight.Inflight = {}
_generation = 0  # bumped whenever the cache is dropped: a load that spans it is not cached
_listener: asyncio.Task[None] | None = None
_subscribed = False

_load = database_sync_to_async(load_grant_state)


async def grant_state(grant_id: str) -> GrantState | None:
    """The grant's state (None: no such grant). Raises GatewayError(gateway_unavailable).

    The caller has run ensure_listener() for this loop (the app does, once per request).
    """
    hit = _cache.get(grant_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    return await flight.shared(_loading, grant_id, lambda: _fetch(grant_id))


async def _fetch(grant_id: str) -> GrantState | None:
    generation = _generation  # only an answer read while subscribed throughout may be cached
    try:
        state: GrantState | None = await _load(grant_id)
    except Exception:
        log.exception("grant lookup failed")
        raise GatewayError("gateway_unavailable", retry_after=2) from None
    now = time.monotonic()
    if state is not None and _revoked.get(grant_id, 0) > now:
        state = replace(state, revoked=True)
    if _subscribed and generation == _generation:
        if len(_cache) >= MAX_ENTRIES:
            _purge(now)
        _cache[grant_id] = (now + (FOUND_TTL if state else MISSING_TTL), state)
    return state


def forget(grant_id: str) -> None:
    """A revocation arrived: the grant is revoked from now on, and its open streams end."""
    now = time.monotonic()
    _revoked[grant_id] = now + FOUND_TTL
    hit = _cache.get(grant_id)
    if hit is not None and hit[1] is not None:
        _cache[grant_id] = (now + FOUND_TTL, replace(hit[1], revoked=True))
    for on_revoke in list(_watchers.get(grant_id, ())):
        on_revoke()


def _drop_cache() -> None:
    global _generation
    _generation += 1
    _cache.clear()


def _purge(now: float) -> None:
    for key in [k for k, (expires, _) in _cache.items() if expires <= now]:
        del _cache[key]
    for key in [k for k, expires in _revoked.items() if expires <= now]:
        del _revoked[key]
    if len(_cache) >= MAX_ENTRIES:
        _drop_cache()


def watch(grant_id: str, on_revoke: Callable[[], None]) -> None:
    """Call on_revoke when a revocation of the grant arrives; pair with unwatch in a finally."""
    _watchers.setdefault(grant_id, set()).add(on_revoke)


def unwatch(grant_id: str, on_revoke: Callable[[], None]) -> None:
    watchers = _watchers.get(grant_id)
    if watchers is not None:
        watchers.discard(on_revoke)
        if not watchers:
            del _watchers[grant_id]


def ensure_listener() -> None:
    global _listener, _subscribed
    loop = asyncio.get_running_loop()
    if _listener is not None and not _listener.done() and _listener.get_loop() is loop:
        return
    _subscribed = False  # a listener on another (closed) loop hears nothing for this one
    _drop_cache()
    _listener = loop.create_task(_listen(), name="preview-revocations")


async def _listen() -> None:
    global _subscribed, _generation
    layer = get_channel_layer()
    if layer is None:
        log.warning("no channel layer: preview grants are read from the database on every request")
        return
    while True:
        try:
            channel = await layer.new_channel("preview-gateway.")
            await layer.group_add(REVOCATION_GROUP, channel)
            _subscribed = True
            _generation += 1  # a load that began while deaf must not be cached
            rejoin = asyncio.ensure_future(_rejoin(layer, channel))
            try:
                while True:
                    message = await layer.receive(channel)
                    if message.get("type") == REVOCATION_MESSAGE:
                        forget(str(message.get("grant_id", "")))
            finally:
                rejoin.cancel()
        except asyncio.CancelledError:
            _subscribed = False
            raise
        except Exception:
            # Whatever was cached may have missed a revocation while we were deaf.
            _subscribed = False
            _drop_cache()
            log.exception("revocation listener lost its channel layer; retrying")
            await asyncio.sleep(1)


async def _rejoin(layer: Any, channel: str) -> None:
    # Group memberships expire (a day, in channels' layers): renew ours now and then.
    while True:
        await asyncio.sleep(REJOIN_SECONDS)
        await layer.group_add(REVOCATION_GROUP, channel)


async def stop_listener() -> None:
    global _listener, _subscribed
    task, _listener, _subscribed = _listener, None, False
    if task is not None and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
        # channels_redis unsubscribes on cancel, which can take a while; don't wait it out.
        await asyncio.wait({task}, timeout=1)
