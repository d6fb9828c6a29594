"""Running code in a context: one run row per execution, events as the kernel sends them.

`prepare` checks a request and records a queued run; `open_kernel` starts or reaches the
context's kernel (errors here are still plain HTTP errors); `execute` sends the code and
yields the client's events as they arrive, then the artifacts, and records the outcome.
The same `execute` serves the streamed `code/execute` and background `code/runs`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db import close_old_connections
from django.utils import timezone
from jupyter_client.blocking.client import BlockingKernelClient

from console.code_interpreter import artifacts, contexts, kernels, messages
from console.errors import DomainError
from console.models import CODE_RUN_TERMINAL, CodeContext, CodeRun, CodeRunStatus, Sandbox
from console.sandboxes.service import validated_envs

DEFAULT_TIMEOUT_SECS = 300
MAX_TIMEOUT_SECS = 3600
MAX_CODE_BYTES = 1024 * 1024
# Output kept and streamed per execution (text and images); past it, a notice.
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
KEEPALIVE_SECONDS = 10.0
# After an interrupt (timeout, cancel, a client that left), how long the kernel has to
# finish the cell before the run is recorded as it stands.
INTERRUPT_GRACE_SECONDS = 15.0
KERNEL_CHECK_SECONDS = 2.0
RUN_RETENTION = timedelta(days=7)
# Files written within this much before the run began still count as its artifacts
# (file system clocks tick coarser than ours).
MTIME_SLACK = timedelta(milliseconds=50)

KEEPALIVE = None  # what execute yields while nothing happens, so a stream stays alive


def _timeout(value: Any) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_SECS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TIMEOUT_SECS:
        raise DomainError(
            "invalid_request", f"timeout must be an integer from 1 to {MAX_TIMEOUT_SECS} seconds"
        )
    return value


def _code(value: Any) -> str:
    if not isinstance(value, str):
        raise DomainError("invalid_request", "code must be a string")
    if len(value.encode()) > MAX_CODE_BYTES:
        raise DomainError("payload_too_large", f"code is larger than {MAX_CODE_BYTES} bytes")
    if "\x00" in value:
        raise DomainError("invalid_request", "code must not contain NUL characters")
    return value


def prepare(sandbox: Sandbox, body: dict[str, Any], *, background: bool) -> CodeRun:
    """A queued run for the request body (code, context_id, language, envs, timeout)."""
    known = {"code", "context_id", "language", "envs", "timeout"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise DomainError("invalid_request", f"unknown field(s): {', '.join(unknown)}")
    code = _code(body.get("code"))
    timeout = _timeout(body.get("timeout"))
    envs = validated_envs(body.get("envs") or {})
    context_id = body.get("context_id")
    if context_id is not None and not isinstance(context_id, str):
        raise DomainError("invalid_request", "context_id must be a string")
    language = contexts.language(body.get("language"))
    if background and not context_id:
        raise DomainError("invalid_request", "context_id is required for a background run")
    context = contexts.get(sandbox, context_id) if context_id else contexts.default(sandbox)
    if context.language != language:
        raise DomainError(
            "invalid_request",
            f"Context {context.public_id} runs {context.language}, not {language}",
        )
    now = timezone.now()
    return CodeRun.objects.create(
        project=sandbox.project,
        sandbox=sandbox,
        context_public_id=context.public_id,
        code=code,
        pending_envs=envs,
        timeout_secs=timeout,
        background=background,
        created_at=now,
        expires_at=now + RUN_RETENTION,
    )


def context_of(run: CodeRun) -> CodeContext:
    return contexts.get(run.sandbox, run.context_public_id)


def open_kernel(run: CodeRun) -> tuple[CodeContext, BlockingKernelClient]:
    """The run's context with its kernel running and a ready client on it."""
    context = context_of(run)
    kernels.ensure_started(context)
    return context, kernels.connect(context)


def fail(run: CodeRun, reason: str) -> None:
    run.status = CodeRunStatus.FAILED
    run.failure_reason = reason[:500]
    run.pending_envs = {}
    run.completed_at = timezone.now()
    run.save(update_fields=["status", "failure_reason", "pending_envs", "completed_at"])


def _silent(client: BlockingKernelClient, code: str) -> None:
    """Run bookkeeping code without output, history or a new execution count."""
    client.execute(code, silent=True, store_history=False, allow_stdin=False)


def _set_envs(client: BlockingKernelClient, envs: dict[str, str]) -> None:
    _silent(
        client,
        "import os as _ns_os, builtins as _ns_b\n"
        f"_ns_b._nullspace_envs = {{k: _ns_os.environ.get(k) for k in {list(envs)!r}}}\n"
        f"_ns_os.environ.update({json.dumps(envs)})\n"
        "del _ns_os, _ns_b\n",
    )


def _restore_envs(client: BlockingKernelClient) -> None:
    _silent(
        client,
        "import os as _ns_os, builtins as _ns_b\n"
        "for _ns_k, _ns_v in getattr(_ns_b, '_nullspace_envs', {}).items():\n"
        "    _ns_os.environ.pop(_ns_k, None) if _ns_v is None else "
        "_ns_os.environ.__setitem__(_ns_k, _ns_v)\n"
        "_ns_b._nullspace_envs = {}\n"
        "del _ns_os, _ns_b\n",
    )


def _event_size(event: dict[str, Any]) -> int:
    return sum(len(v) for v in event.values() if isinstance(v, str))


class _Watch:
    """Why an execution must stop early: its timeout, a cancel, a reader that left."""

    def __init__(self, run: CodeRun, stop: threading.Event | None) -> None:
        self.run = run
        self.stop = stop
        self.deadline = time.monotonic() + run.timeout_secs
        self.reason = ""

    def due(self) -> str:
        if self.reason:
            return ""
        if time.monotonic() >= self.deadline:
            self.reason = "timeout"
        elif self.stop is not None and self.stop.is_set():
            self.reason = "client_disconnected"
        return self.reason


def execute(
    run: CodeRun,
    context: CodeContext,
    client: BlockingKernelClient,
    stop: threading.Event | None = None,
) -> Iterator[dict[str, Any] | None]:
    """Events of the run as they happen (None: nothing for a while); records the run."""
    try:
        yield from _execute(run, context, client, stop)
    finally:
        client.stop_channels()
        close_old_connections()


def _execute(
    run: CodeRun,
    context: CodeContext,
    client: BlockingKernelClient,
    stop: threading.Event | None,
) -> Iterator[dict[str, Any] | None]:
    run.refresh_from_db()
    if run.status in CODE_RUN_TERMINAL:
        return
    envs = dict(run.pending_envs or {})
    if envs:
        _set_envs(client, envs)
    since = timezone.now() - MTIME_SLACK
    # Runs are independent requests: one that fails must not abort the ones queued
    # behind it in the kernel (Jupyter's default for a notebook's cells).
    msg_id = client.execute(run.code, store_history=True, allow_stdin=False, stop_on_error=False)
    run.pending_envs = {}
    run.save(update_fields=["pending_envs"])
    summary = messages.Summary()
    lines = messages.StreamLines()
    watch = _Watch(run, stop)
    output = 0
    cut = False
    quiet_since = time.monotonic()
    checked = time.monotonic()
    interrupted_at: float | None = None
    finished = False
    kernel_died = False
    unstoppable = False
    while not finished:
        reason = watch.due()
        if reason:
            interrupted_at = time.monotonic()
            _interrupt(context)
        if (
            interrupted_at is not None
            and time.monotonic() - interrupted_at > INTERRUPT_GRACE_SECONDS
        ):
            # Code that ignores KeyboardInterrupt would hold the context for ever: end
            # the kernel instead; the next run starts a fresh one.
            kernels.stop(context)
            unstoppable = True
            break
        try:
            msg = client.get_iopub_msg(timeout=0.25)
        except queue.Empty:
            for item in lines.flush():  # output paused mid-line: show what there is
                summary.add(item)
                yield item
            now = time.monotonic()
            if now - checked > KERNEL_CHECK_SECONDS:
                checked = now
                if not kernels.is_running(context):
                    kernel_died = True
                    break
            if now - quiet_since > KEEPALIVE_SECONDS and not watch.reason:
                quiet_since = now
                yield KEEPALIVE
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg.get("msg_type")
        if kind == "status":
            state = msg["content"].get("execution_state")
            if state == "busy":
                _mark_running(run, context)
            elif state == "idle":
                finished = True
            continue
        event = messages.event_for(msg)
        if event is None:
            continue
        if event["type"] in ("stdout", "stderr", "result"):
            size = _event_size(event)
            if output + size > MAX_OUTPUT_BYTES:
                if cut:
                    continue
                cut = True
                event = {
                    "type": "stderr",
                    "text": f"[output past {MAX_OUTPUT_BYTES} bytes left out]\n",
                    "timestamp": int(time.time() * 1000),
                }
            output += size
        ready = (
            lines.feed(event) if event["type"] in ("stdout", "stderr") else lines.flush() + [event]
        )
        quiet_since = time.monotonic()
        for item in ready:
            summary.add(item)
            if watch.reason != "client_disconnected":
                yield item
    for item in lines.flush():
        summary.add(item)
        yield item
    if envs and not kernel_died:
        _restore_envs(client)
    if kernel_died:
        # The context may be gone too (removed while it ran): an update touches no row then.
        CodeContext.objects.filter(pk=context.pk, kernel_pid=context.kernel_pid).update(
            kernel_pid=0
        )
        event = messages.error_event(
            "KernelDied", "The kernel stopped during the execution; its state is gone", ""
        )
        summary.add(event)
        yield event
    elif watch.reason == "timeout":
        event = messages.error_event(
            "TimeoutError",
            f"Execution ran past its timeout of {run.timeout_secs} s and was interrupted"
            + (
                "; it did not stop, so its kernel was ended (its state is gone)"
                if unstoppable
                else ""
            ),
            "",
        )
        summary.add(event)
        yield event
    for artifact_event in _artifacts(run, context, summary, since):
        summary.add(artifact_event)
        yield artifact_event
    _finish(run, summary, watch.reason, kernel_died)


def _interrupt(context: CodeContext) -> None:
    try:
        kernels.interrupt(context)
    except DomainError as exc:
        logging.getLogger(__name__).info("interrupt of %s failed: %s", context.public_id, exc)


def _mark_running(run: CodeRun, context: CodeContext) -> None:
    """The kernel began this run; a cancel asked while it waited is carried out now."""
    run.status = CodeRunStatus.RUNNING
    run.started_at = timezone.now()
    updated = CodeRun.objects.filter(pk=run.pk, status=CodeRunStatus.QUEUED).update(
        status=run.status, started_at=run.started_at
    )
    if not updated:  # cancelled while queued
        _interrupt(context)


def _artifacts(
    run: CodeRun, context: CodeContext, summary: messages.Summary, since: Any
) -> Iterator[dict[str, Any]]:
    kept = 0
    for n, result in enumerate(summary.results, start=1):
        if kept >= artifacts.MAX_PER_EXECUTION:
            return
        artifact = artifacts.from_display(context, run, summary.execution_count, result, n)
        if artifact is not None:
            kept += 1
            yield {"type": "artifact", "artifact": artifacts.to_dict(artifact)}
    for artifact in artifacts.collect_files(
        context, run, summary.execution_count, since, artifacts.MAX_PER_EXECUTION - kept
    ):
        yield {"type": "artifact", "artifact": artifacts.to_dict(artifact)}


def _finish(run: CodeRun, summary: messages.Summary, reason: str, kernel_died: bool) -> None:
    run.refresh_from_db(fields=["cancel_requested_at", "status"])
    if run.cancel_requested_at is not None or reason == "client_disconnected":
        run.status = CodeRunStatus.CANCELLED
        run.failure_reason = "cancelled" if run.cancel_requested_at else "client_disconnected"
    elif kernel_died:
        run.status = CodeRunStatus.FAILED
        run.failure_reason = "kernel_died"
    elif reason == "timeout":
        run.status = CodeRunStatus.FAILED
        run.failure_reason = "timeout"
    elif summary.error is not None:
        run.status = CodeRunStatus.FAILED
        run.failure_reason = f"{summary.error['name']}: {summary.error['value']}"[:500]
    else:
        run.status = CodeRunStatus.SUCCEEDED
    run.execution = summary.as_dict()
    run.completed_at = timezone.now()
    if run.started_at is None:
        run.started_at = run.completed_at
    run.save(update_fields=["status", "failure_reason", "execution", "completed_at", "started_at"])
