"""The worker's sandbox jobs: timeouts act on time; start-up reconciliation."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from console.actor import Actor
from console.models import LifecycleEvent, Operation, Sandbox, SandboxStatus
from console.runtime import get_driver
from console.runtime.base import CreateSpec
from console.sandboxes import service as sandboxes
from console.sandboxes.jobs import act_on_timeouts, reconcile_runtime, record_runtime_events
from tests.runtime.conftest import marked_pids, put, start, wait_http


@pytest.fixture
def runtime(settings, tmp_path):
    """The configured driver, on a runtime root of this test alone."""
    settings.RUNTIME_ROOT = tmp_path / "sandboxes"
    settings.DATA_DIR = tmp_path / "data"  # snapshots go to DATA_DIR/snapshots
    get_driver.cache_clear()
    driver = get_driver()
    yield driver
    driver.reconcile(set())
    get_driver.cache_clear()


def _run_jobs_until(predicate, within: float) -> float:
    """Tick the timeout job as the worker does (every second is its cadence; we tick
    faster to measure lateness); return when predicate() held."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        act_on_timeouts()
        if predicate():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError("the timeout job did not act in time")


def _status(sandbox: Sandbox) -> str:
    sandbox.refresh_from_db()
    return sandbox.status


@pytest.mark.django_db(transaction=True)
def test_timeout_destroys_on_time(runtime, project):
    sandbox, _ = sandboxes.create_sandbox(project, actor=Actor(), timeout_ms=1000)
    start(runtime, sandbox.public_id, "sleep 300")
    assert act_on_timeouts() == []  # not due yet
    assert _status(sandbox) == SandboxStatus.RUNNING
    waited = _run_jobs_until(lambda: _status(sandbox) == SandboxStatus.DESTROYED, within=5)
    assert waited < 1.6
    assert not runtime.exists(sandbox.public_id)
    assert marked_pids(runtime, sandbox.public_id) == []
    ops = list(
        LifecycleEvent.objects.filter(sandbox_id=sandbox.public_id).values_list(
            "operation", flat=True
        )
    )
    assert Operation.TIMEOUT_EXPIRED in ops and Operation.DESTROY in ops
    assert ops.count(Operation.TIMEOUT_EXPIRED) == 1
    assert act_on_timeouts() == []  # acted once


@pytest.mark.django_db(transaction=True)
def test_timeout_pauses_when_asked(runtime, project):
    sandbox, _ = sandboxes.create_sandbox(
        project, actor=Actor(), timeout_ms=1000, timeout_action="pause"
    )
    put(runtime, sandbox.public_id, "index.html", "still here")
    start(runtime, sandbox.public_id, "python3 -m http.server 8080 --bind 0.0.0.0")
    where = runtime.upstream(sandbox.public_id, 8080)
    assert wait_http(*where, "/index.html") == b"still here"
    _run_jobs_until(lambda: _status(sandbox) == SandboxStatus.PAUSED, within=5)
    assert runtime.is_paused(sandbox.public_id)
    with pytest.raises(OSError):
        wait_http(*where, "/index.html", within=0.5)
    sandboxes.resume_existing(sandbox, actor=Actor())
    assert wait_http(*where, "/index.html") == b"still here"


@pytest.mark.django_db(transaction=True)
def test_timeout_claim_acts_once(runtime, project):
    sandbox, _ = sandboxes.create_sandbox(project, actor=Actor(), timeout_ms=60_000)
    due = timezone.now() - timedelta(seconds=1)
    Sandbox.objects.filter(pk=sandbox.pk).update(timeout_at=due)
    # Another worker claimed it first (moved timeout_at off the value we read).
    Sandbox.objects.filter(pk=sandbox.pk, timeout_at=due).update(timeout_at=None)
    assert act_on_timeouts() == []
    assert _status(sandbox) == SandboxStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_reconcile_on_start(runtime, project):
    kept, _ = sandboxes.create_sandbox(project, actor=Actor())
    lost, _ = sandboxes.create_sandbox(project, actor=Actor())
    # A runtime sandbox no row knows about (left by a crash), with a running process.
    runtime.create(CreateSpec(sandbox_id="sb_orphan1"))
    start(runtime, "sb_orphan1", "sleep 300")
    # A running row whose runtime vanished (the machine rebooted).
    runtime.destroy(lost.public_id)

    assert reconcile_runtime() == [lost.public_id]

    assert not runtime.exists("sb_orphan1") and marked_pids(runtime, "sb_orphan1") == []
    assert runtime.exists(kept.public_id) and _status(kept) == SandboxStatus.RUNNING
    assert _status(lost) == SandboxStatus.ERROR
    event = LifecycleEvent.objects.get(sandbox_id=lost.public_id, operation=Operation.RECONCILE)
    assert event.actor_kind == "reconcile" and event.reason == "runtime_lost"
    assert reconcile_runtime() == []  # nothing more to do


def test_an_oom_kill_becomes_a_lifecycle_event(runtime, project):
    sandbox, _ = sandboxes.create_sandbox(project, actor=Actor(), memory_mb=96)
    result = sandboxes.run_command(
        sandbox,
        sandboxes.exec_request(
            {"command": "python -c 'x = bytearray(400 * 2**20)'", "shell": True}
        ),
    )
    assert result.exit_code == 137
    assert record_runtime_events() == 1
    event = LifecycleEvent.objects.get(sandbox_id=sandbox.public_id, reason="oom")
    assert event.operation == Operation.RECONCILE and event.actor_kind == "system"
    assert event.metadata["event"] == "oom" and event.metadata["memory_mb"] == 96
    assert "bytearray" in event.metadata["command"]
    assert record_runtime_events() == 0  # handed out once
