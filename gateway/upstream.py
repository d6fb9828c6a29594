"""Where a preview request goes: the sandbox's state, waking it when it may be woken, and the
runtime driver's address for the port.

The address comes from `settings.PREVIEW_UPSTREAM_RESOLVER` (a dotted path to a sync
`(sandbox_id, port) -> (host, port)`), by default the runtime driver's `upstream()`.
Answers are cached for a couple of seconds so a busy preview costs no query per request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string

from console.models import Sandbox
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from gateway import flight
from gateway.errors import GatewayError
from gateway.types import Address

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
# SandboxStatus values, as stored (tests/gateway/test_cores.py checks they match).
RUNNING, PAUSED, CREATING, DESTROYED = "running", "paused", "creating", "destroyed"


@dataclass(frozen=True)
class SandboxInfo:
    sandbox_id: str
    runtime_id: str  # the runtime driver's name for it (docs/api.md: resume hands it over)
    status: str
    auto_resume: bool
    allow_public_traffic: bool
    traffic_token_digest: str
    mask_request_host: str


_sandboxes: dict[str, tuple[float, SandboxInfo | None]] = {}
_addresses: dict[tuple[str, int], tuple[float, tuple[str, int]]] = {}
_waking: dict[str, asyncio.Task[None]] = {}
_loading: flight.Inflight = {}


def driver_address(sandbox_id: str, port: int) -> tuple[str, int]:
    return get_driver().upstream(sandbox_id, port)


@functools.cache
def _resolver(path: str) -> Callable[[str, int], Address]:
    resolve: Callable[[str, int], Address] = import_string(path)
    return resolve


def _load(sandbox_id: str) -> SandboxInfo | None:
    sandbox = Sandbox.objects.filter(public_id=sandbox_id).first()
    if sandbox is None:
        return None
    return SandboxInfo(
        sandbox_id=sandbox.public_id,
        runtime_id=sandbox.runtime_id,
        status=sandbox.status,
        auto_resume=sandbox.auto_resume,
        allow_public_traffic=sandbox.allow_public_traffic,
        traffic_token_digest=sandbox.traffic_token_digest,
        mask_request_host=sandbox.mask_request_host,
    )


_load_async = database_sync_to_async(_load)


async def sandbox_info(sandbox_id: str, *, fresh: bool = False) -> SandboxInfo:
    hit = _sandboxes.get(sandbox_id)
    if hit is not None and not fresh and hit[0] > time.monotonic():
        info = hit[1]
    else:
        # A fresh read (after a wake) must not join a read that began before it.
        key = ("fresh", sandbox_id) if fresh else sandbox_id
        info = await flight.shared(_loading, key, lambda: _fetch(sandbox_id))
    if info is None:
        raise GatewayError("sandbox_not_found")
    return info


async def _fetch(sandbox_id: str) -> SandboxInfo | None:
    try:
        info: SandboxInfo | None = await _load_async(sandbox_id)
    except Exception:
        log.exception("sandbox lookup failed")
        raise GatewayError("gateway_unavailable", retry_after=2) from None
    if len(_sandboxes) > 10_000:
        _sandboxes.clear()
    _sandboxes[sandbox_id] = (time.monotonic() + CACHE_SECONDS, info)
    return info


async def address(info: SandboxInfo, port: int) -> tuple[str, int]:
    """The upstream (host, port), waking a paused auto_resume sandbox within a bounded wait."""
    if info.status == PAUSED:
        if not info.auto_resume:
            raise GatewayError("sandbox_paused", hint="Resume it with `nullspace sandbox resume`.")
        await _wake(info.sandbox_id)
        info = await sandbox_info(info.sandbox_id, fresh=True)
    if info.status == CREATING or info.status == PAUSED:
        raise GatewayError("sandbox_starting", retry_after=2)
    if info.status == DESTROYED:
        raise GatewayError("sandbox_gone")
    if info.status != RUNNING:
        raise GatewayError("sandbox_error")
    key = (info.runtime_id, port)
    hit = _addresses.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    return await flight.shared(_loading, key, lambda: _resolve(key))


async def _resolve(key: tuple[str, int]) -> tuple[str, int]:
    resolve = _resolver(settings.PREVIEW_UPSTREAM_RESOLVER)
    try:
        found: Address = await asyncio.to_thread(resolve, key[0], key[1])
    except RuntimeError_ as exc:
        log.warning("no upstream for %s:%s: %s", *key, exc.code)
        raise GatewayError(
            "sandbox_gone" if exc.code == "sandbox_not_found" else "upstream_unavailable"
        ) from None
    if len(_addresses) > 10_000:
        _addresses.clear()
    _addresses[key] = (time.monotonic() + CACHE_SECONDS, found)
    return found


async def _wake(sandbox_id: str) -> None:
    # One resume per sandbox however many requests wait on it; it goes on past our wait.
    task = _waking.get(sandbox_id)
    if task is None or task.done():
        task = asyncio.ensure_future(_ensure_running(sandbox_id))
        _waking[sandbox_id] = task
        task.add_done_callback(lambda _: _waking.pop(sandbox_id, None))
    wait = settings.PREVIEW_RESUME_WAIT_SECONDS
    try:
        await asyncio.wait_for(asyncio.shield(task), wait)
    except TimeoutError:
        raise GatewayError("sandbox_starting", retry_after=5, hint="It is being resumed.") from None
    except GatewayError:
        raise
    except Exception as exc:
        code = getattr(exc, "code", "")
        log.warning("could not wake %s: %s", sandbox_id, code or type(exc).__name__)
        raise GatewayError(
            "sandbox_gone" if code == "sandbox_not_found" else "sandbox_starting", retry_after=5
        ) from None


@sync_to_async(thread_sensitive=False)
def _ensure_running(sandbox_id: str) -> None:
    # Its own thread, so a slow resume never holds up the gateway's other database work.
    from console.sandboxes.service import ensure_running

    try:
        sandbox = Sandbox.objects.filter(public_id=sandbox_id).first()
        if sandbox is None:
            raise GatewayError("sandbox_gone")
        ensure_running(sandbox, wait_seconds=settings.PREVIEW_RESUME_WAIT_SECONDS)
    finally:
        connection.close()
