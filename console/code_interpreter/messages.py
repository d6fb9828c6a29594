"""Jupyter messages as the client's execution events, and an execution's summary.

The client (nullspace/code_interpreter.py) reads SSE events whose `type` is `stdout`,
`stderr`, `result`, `error`, `artifact` or `number_of_executions`; a result carries one
key per representation (`text`, `html`, `png` as base64, ...).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from console.code_interpreter.kernel_setup import CHART_MIME

# MIME type -> the result key the client reads.
RESULT_KEYS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    CHART_MIME: "chart",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def timestamp_ms(msg: dict[str, Any]) -> int:
    date = msg.get("header", {}).get("date")
    if isinstance(date, datetime):
        return int(date.timestamp() * 1000)
    return 0


def result_event(content: dict[str, Any], *, main: bool) -> dict[str, Any]:
    data = content.get("data") or {}
    event: dict[str, Any] = {"type": "result", "is_main_result": main}
    other: dict[str, Any] = {}
    for mime, value in data.items():
        key = RESULT_KEYS.get(mime)
        if key is None:
            other[mime] = value
        elif isinstance(value, str) or key in ("json", "chart"):
            event[key] = value.strip() if key in ("png", "jpeg") else value
    if other:
        event["data"] = other
    return event


def error_event(name: str, value: str, traceback: list[str] | str) -> dict[str, Any]:
    text = "\n".join(traceback) if isinstance(traceback, list) else traceback
    return {"type": "error", "name": name, "value": value, "traceback": _ANSI.sub("", text)}


def event_for(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The event for one IOPub message of an execution (None: nothing the client reads)."""
    kind = msg.get("msg_type")
    content = msg.get("content") or {}
    if kind == "stream":
        name = "stderr" if content.get("name") == "stderr" else "stdout"
        return {"type": name, "text": content.get("text", ""), "timestamp": timestamp_ms(msg)}
    if kind == "execute_result":
        return result_event(content, main=True)
    if kind == "display_data":
        return result_event(content, main=False)
    if kind == "error":
        return error_event(
            str(content.get("ename", "Error")),
            str(content.get("evalue", "")),
            content.get("traceback") or [],
        )
    if kind == "execute_input":
        return {"type": "number_of_executions", "execution_count": content.get("execution_count")}
    return None


class Summary:
    """What the events of one execution add up to (the client's Execution), kept for runs."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.error: dict[str, Any] | None = None
        self.execution_count: int | None = None

    def add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "stdout":
            self.stdout.append(event["text"])
        elif kind == "stderr":
            self.stderr.append(event["text"])
        elif kind == "result":
            self.results.append({k: v for k, v in event.items() if k != "type"})
        elif kind == "error":
            self.error = {k: event[k] for k in ("name", "value", "traceback")}
        elif kind == "artifact":
            self.artifacts.append(event["artifact"])
        elif kind == "number_of_executions":
            self.execution_count = event["execution_count"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "artifacts": self.artifacts,
            "logs": {"stdout": self.stdout, "stderr": self.stderr},
            "error": self.error,
            "execution_count": self.execution_count,
        }


class StreamLines:
    """Stream output as whole lines: the kernel flushes on a timer, so one print() may come
    as two messages ("1", then "\\n"). Each event carries one line; text without its
    newline is handed on when something else happens or the output pauses."""

    MAX_PENDING = 64 * 1024

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, int]] = {}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event["type"]
        out = [e for other in list(self.pending) if other != kind for e in self._flush(other)]
        text, stamp = self.pending.pop(kind, ("", event["timestamp"]))
        text += event["text"]
        lines = text.splitlines(keepends=True)
        rest = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
        out += [{"type": kind, "text": line, "timestamp": stamp} for line in lines]
        if rest:
            self.pending[kind] = (rest, event["timestamp"])
            if len(rest) > self.MAX_PENDING:
                out += self._flush(kind)
        return out

    def flush(self) -> list[dict[str, Any]]:
        return [e for kind in list(self.pending) for e in self._flush(kind)]

    def _flush(self, kind: str) -> list[dict[str, Any]]:
        text, stamp = self.pending.pop(kind, ("", 0))
        return [{"type": kind, "text": text, "timestamp": stamp}] if text else []
