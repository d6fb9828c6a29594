"""How a state change runs: claiming a sandbox with a conditional UPDATE, waiting for
another change to finish, recording its lifecycle events, and calling the runtime
driver with its errors turned into domain errors.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.utils import timezone

from console.actor import Actor
from console.errors import DomainError
from console.models import (
    EventStatus,
    Sandbox,
    SandboxStatus,
)
from console.runtime.base import RuntimeError_
from console.sandboxes.lifecycle import record_event

log = logging.getLogger(__name__)


T = TypeVar("T")


# Statuses that count against a project's running-sandbox quota.
ACTIVE = (SandboxStatus.CREATING, SandboxStatus.RUNNING)


# A transition older than this is taken as abandoned (the process died mid-way).
STALE_TRANSITION = timedelta(minutes=10)


# Lifecycle event reasons the client knows: what asked for the change.
REASON_MANUAL = "manual"  # a destroy someone asked for (API or console)


REASON_TIMEOUT = "timeout"


def claim(sandbox: Sandbox, statuses: tuple[str, ...], transition: str) -> bool:
    """Take the sandbox for one transition; False when another state change holds it."""
    return bool(
        Sandbox.objects.filter(pk=sandbox.pk, status__in=statuses, transition="").update(
            transition=transition, transition_started_at=timezone.now()
        )
    )


def wait_idle(sandbox: Sandbox, seconds: float = 60) -> None:
    """Wait for another transition of this sandbox to finish (or be found abandoned)."""
    deadline = time.monotonic() + seconds
    while True:
        sandbox.refresh_from_db()
        if not sandbox.transition:
            return
        started = sandbox.transition_started_at
        if started is None or timezone.now() - started > STALE_TRANSITION:
            Sandbox.objects.filter(pk=sandbox.pk, transition=sandbox.transition).update(
                transition=""
            )
            continue
        if time.monotonic() > deadline:
            raise DomainError(
                "sandbox_not_ready",
                f"Sandbox {sandbox.public_id} is busy ({sandbox.transition})",
                retryable=True,
                suggested_action="Retry in a moment.",
            )
        time.sleep(0.1)


def release(sandbox: Sandbox, transition: str) -> None:
    Sandbox.objects.filter(pk=sandbox.pk, transition=transition).update(transition="")


def driver_call(call: Callable[[], T]) -> T:
    """Run a driver call, turning runtime errors into domain errors (same stable code)."""
    try:
        return call()
    except RuntimeError_ as exc:
        raise domain_error(exc) from exc


def domain_error(exc: RuntimeError_) -> DomainError:
    return DomainError(exc.code, str(exc))


def quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:
        log.warning("cleanup step failed: %s", exc)


class OperationEvents:
    """One operation's lifecycle events: `requested`, then `succeeded` or `failed`, with
    the same reason and metadata (docs/api.md, "Lifecycle events")."""

    def __init__(
        self,
        operation: str,
        actor: Actor,
        *,
        reason: str = "",
        metadata: dict[str, Any] | None = None,
        **ids: str,
    ) -> None:
        self.operation = operation
        self.actor = actor
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.ids = ids

    def requested(self, sandbox: Sandbox, **ids: str) -> None:
        self._record(sandbox, EventStatus.REQUESTED, None, ids)

    def succeeded(self, sandbox: Sandbox, **ids: str) -> None:
        self._record(sandbox, EventStatus.SUCCEEDED, None, ids)

    def failed(self, sandbox: Sandbox, error: DomainError, **ids: str) -> None:
        self._record(sandbox, EventStatus.FAILED, error, ids)

    def _record(
        self, sandbox: Sandbox, status: str, error: DomainError | None, ids: dict[str, str]
    ) -> None:
        meta = dict(self.metadata)
        if self.actor.api_key is not None:
            meta["api_key_id"] = self.actor.api_key.public_id
        fields = {"sandbox_id": sandbox.public_id, **self.ids, **ids}
        if error is not None:
            fields.update(error_code=error.code, error_message=error.message)
        record_event(
            sandbox.project,
            self.operation,
            status=status,
            actor_kind=self.actor.kind,
            user_id=str(self.actor.user.pk) if self.actor.user is not None else "",
            reason=self.reason,
            metadata=meta,
            **fields,
        )
