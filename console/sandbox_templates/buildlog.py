"""A build's log: numbered entries (BuildLogEntry), build secrets masked in every line.

Output arrives in chunks; `feed` cuts it into lines. Entries past
TEMPLATE_MAX_LOG_ENTRIES are dropped (one warning says so) except the structural ones
(start, cache, error, cancelled, end), so a long build still ends readably.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from console.models import TemplateBuild, TemplateBuildLog

MAX_LINE = 8192
MASK = "[redacted]"
STRUCTURAL = ("start", "cache", "error", "cancelled", "end", "warning")


class Masker:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def value(self, data: Any) -> Any:
        """Mask inside any JSON-able value (a result, an error detail)."""
        if not self.secrets:
            return data
        return json.loads(self(json.dumps(data)))


class BuildLog:
    def __init__(self, build: TemplateBuild, secrets: list[str]) -> None:
        self.build = build
        self.mask = Masker(secrets)
        self.count = build.log_rows.count()
        self.dropped = False
        self.tail: deque[str] = deque(maxlen=20)  # the running step's last lines
        self.pending = {"stdout": "", "stderr": ""}

    def add(
        self,
        kind: str,
        message: str,
        *,
        level: str = "info",
        phase: str | None = None,
        step_index: int | None = None,
        **extra: Any,
    ) -> None:
        if self.count >= settings.TEMPLATE_MAX_LOG_ENTRIES and kind not in STRUCTURAL:
            if not self.dropped:
                self.dropped = True
                self._insert(
                    "warning",
                    f"output beyond {settings.TEMPLATE_MAX_LOG_ENTRIES} log entries is not kept",
                    "warn",
                    phase,
                    step_index,
                    {},
                )
            return
        self._insert(
            kind,
            self.mask(message)[:MAX_LINE],
            level,
            phase,
            step_index,
            self.mask.value({k: v for k, v in extra.items() if v is not None}),
        )

    def _insert(
        self,
        kind: str,
        message: str,
        level: str,
        phase: str | None,
        step_index: int | None,
        extra: dict[str, Any],
    ) -> None:
        for _attempt in range(5):
            highest = self.build.log_rows.aggregate(m=Max("offset"))["m"]
            offset = 0 if highest is None else highest + 1
            try:
                with transaction.atomic():
                    TemplateBuildLog.objects.create(
                        build=self.build,
                        offset=offset,
                        timestamp=timezone.now(),
                        kind=kind,
                        level=level,
                        message=message,
                        phase=phase or "",
                        step_index=step_index,
                        extra=extra,
                    )
                self.count += 1
                return
            except IntegrityError:
                continue  # another writer (a cancel) took this offset

    def feed(self, stream: str, data: str, *, phase: str, step_index: int) -> None:
        text = self.pending[stream] + data
        *lines, rest = text.split("\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.pending[stream] = rest
        for line in lines:
            self._line(line, phase, step_index)

    def flush(self, *, phase: str, step_index: int) -> None:
        for rest in self.pending.values():
            if rest:
                self._line(rest, phase, step_index)
        self.pending = {"stdout": "", "stderr": ""}

    def _line(self, line: str, phase: str, step_index: int) -> None:
        line = self.mask(line.rstrip("\r"))
        self.tail.append(line)
        self.add("message", line, phase=phase, step_index=step_index)
