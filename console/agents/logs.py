"""Log events of runs and services: recording (platform steps and output lines), and pages.

Output arrives in chunks; `LineSink` cuts it into lines, masks the run's env values
(a program that prints its secrets must not store them here) and caps the number of
events per run or service.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from console.errors import DomainError
from console.models import AgentLogEvent, AgentRun, AgentService
from console.timefmt import iso

MAX_LINE = 8192
MASK = "[redacted]"
MIN_MASKED_LENGTH = 4  # shorter values ("1", "yes") would mask half the log


def record(
    target: AgentRun | AgentService,
    event_type: str,
    message: str,
    *,
    level: str = "info",
    source: str = "platform",
    metadata: dict[str, Any] | None = None,
    process_id: int | None = None,
) -> AgentLogEvent:
    run = target if isinstance(target, AgentRun) else None
    service = target if isinstance(target, AgentService) else None
    return AgentLogEvent.objects.create(
        deployment_id=target.deployment_id,
        run=run,
        service=service,
        version_public_id=target.version.public_id,
        level=level,
        event_type=event_type,
        source=source,
        message=message[:MAX_LINE],
        metadata=metadata or {},
        sandbox_public_id=target.sandbox_public_id,
        process_id=process_id,
    )


class LineSink:
    """Turns stdout/stderr chunks into one log event per line."""

    def __init__(
        self, target: AgentRun | AgentService, secrets: list[str], process_id: int | None
    ) -> None:
        self.target = target
        self.process_id = process_id
        self.secrets = sorted(
            {s for s in secrets if len(s) >= MIN_MASKED_LENGTH}, key=len, reverse=True
        )
        self.pending = {"stdout": "", "stderr": ""}
        self.count = _existing(target)
        self.truncated = False
        self.first_line_at: float | None = None

    def feed(self, kind: str, data: str) -> None:
        text = self.pending[kind] + data
        *lines, rest = text.split("\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.pending[kind] = rest
        for line in lines:
            self._emit(kind, line)

    def close(self) -> None:
        for kind, rest in self.pending.items():
            if rest:
                self._emit(kind, rest)
        self.pending = {"stdout": "", "stderr": ""}

    def _emit(self, kind: str, line: str) -> None:
        if self.count >= settings.AGENT_MAX_LOG_EVENTS:
            if not self.truncated:
                self.truncated = True
                record(
                    self.target,
                    "log_truncated",
                    f"output beyond {settings.AGENT_MAX_LOG_EVENTS} log events is not kept",
                    level="warn",
                )
            return
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        self.count += 1
        record(
            self.target,
            "output",
            line.rstrip("\r"),
            level="error" if kind == "stderr" else "info",
            source=kind,
            process_id=self.process_id,
        )


def _existing(target: AgentRun | AgentService) -> int:
    if isinstance(target, AgentRun):
        return AgentLogEvent.objects.filter(run=target).count()
    return AgentLogEvent.objects.filter(service=target).count()


# --- shapes and pages -----------------------------------------------------------------------


def event_to_dict(event: AgentLogEvent, deployment_public_id: str) -> dict[str, Any]:
    return {
        "id": f"adlog_{event.pk}",
        "deployment_id": deployment_public_id,
        "version_id": event.version_public_id or None,
        "run_id": event.run.public_id if event.run is not None else None,
        "service_instance_id": event.service.public_id if event.service is not None else None,
        "sandbox_id": event.sandbox_public_id or None,
        "process_id": event.process_id,
        "source": event.source or None,
        "level": event.level,
        "event_type": event.event_type,
        "message": event.message,
        "metadata": event.metadata or {},
        "created_at": iso(event.created_at),
    }


def _cursor_pk(cursor: str) -> int:
    try:
        return int(cursor.removeprefix("c"))
    except ValueError:
        raise DomainError("invalid_request", "cursor is not one this server gave out") from None


def page(
    target: AgentRun | AgentService,
    *,
    offset: int,
    limit: int,
    cursor: str | None,
    tail: int | None,
) -> dict[str, Any]:
    """LogPage: by offset, after a cursor, or the newest `tail` events (oldest first)."""
    rows = AgentLogEvent.objects.filter(
        **({"run": target} if isinstance(target, AgentRun) else {"service": target})
    ).select_related("run", "service")
    if tail is not None:
        picked = list(rows.order_by("-id")[: min(tail, limit)])[::-1]
        has_more = False
    elif cursor:
        picked = list(rows.filter(id__gt=_cursor_pk(cursor)).order_by("id")[: limit + 1])
        has_more = len(picked) > limit
        picked = picked[:limit]
    else:
        picked = list(rows.order_by("id")[offset : offset + limit + 1])
        has_more = len(picked) > limit
        picked = picked[:limit]
    deployment_id = target.deployment.public_id
    next_cursor = f"c{picked[-1].pk}" if picked else (cursor or None)
    return {
        "events": [event_to_dict(e, deployment_id) for e in picked],
        "offset": offset if tail is None and not cursor else 0,
        "limit": limit,
        "has_more": has_more,
        "next_cursor": next_cursor,
    }
