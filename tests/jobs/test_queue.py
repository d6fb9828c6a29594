"""The job table: claims are exclusive, failures back off then fail, RetryLater
reschedules, a dead worker's job is taken back, periodic rows go round."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from console.jobs import queue, registry
from console.jobs.worker import run_job
from console.models import Job, JobStatus

pytestmark = pytest.mark.django_db

CALLS: list[dict] = []


@registry.task("test.record")
def _record(payload: dict) -> None:
    CALLS.append(payload)
    if payload.get("fail"):
        raise RuntimeError("asked to fail")
    if payload.get("later"):
        raise queue.RetryLater(timezone.now() + timedelta(seconds=60), "not yet")


@pytest.fixture(autouse=True)
def _clean_calls():
    CALLS.clear()


def test_a_job_runs_once_and_its_row_goes():
    queue.enqueue("test.record", {"n": 1})
    job = queue.claim("w1")
    assert job is not None and job.status == JobStatus.RUNNING and job.attempts == 1
    assert queue.claim("w2") is None  # nothing else is due: the claim was exclusive
    run_job(job, "w1")
    assert CALLS == [{"n": 1}]
    assert not Job.objects.exists()


def test_a_claim_skips_jobs_not_yet_due():
    queue.enqueue("test.record", run_after=timezone.now() + timedelta(minutes=5))
    assert queue.claim("w1") is None


def test_failures_back_off_exponentially_then_fail():
    queue.enqueue("test.record", {"fail": True}, max_attempts=3)
    delays = []
    for _ in range(3):
        Job.objects.update(run_after=timezone.now())
        job = queue.claim("w1")
        before = timezone.now()
        run_job(job, "w1")
        row = Job.objects.get()
        delays.append((row.run_after - before).total_seconds())
    row = Job.objects.get()
    assert row.status == JobStatus.FAILED
    assert row.attempts == 3
    assert "asked to fail" in row.last_error
    # Retries 1 and 2 waited about base (5 s) and 2 x base (+-10% jitter).
    assert 4.4 <= delays[0] <= 5.6 and 8.9 <= delays[1] <= 11.1


def test_retry_later_reschedules_without_failing():
    queue.enqueue("test.record", {"later": True}, max_attempts=1)
    run_job(queue.claim("w1"), "w1")
    row = Job.objects.get()
    assert row.status == JobStatus.QUEUED
    assert row.run_after > timezone.now() + timedelta(seconds=50)
    assert row.last_error == "not yet"


def test_an_unknown_kind_fails_at_once():
    queue.enqueue("no.such.kind", max_attempts=5)
    run_job(queue.claim("w1"), "w1")
    row = Job.objects.get()
    assert row.status == JobStatus.FAILED and "unknown job kind" in row.last_error


def test_a_silent_workers_job_is_taken_back_and_its_late_writes_ignored():
    queue.enqueue("test.record", {"n": 2})
    job = queue.claim("dead-worker")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert queue.reap_stale() == [job.pk]
    row = Job.objects.get()
    assert row.status == JobStatus.QUEUED and "dead-worker" in row.last_error
    again = queue.claim("w2")
    assert again.pk == job.pk and again.attempts == 2
    # The dead worker wakes up and reports: its write does not touch w2's claim.
    queue.finish(job, "dead-worker")
    assert Job.objects.get().worker == "w2"
    run_job(again, "w2")
    assert CALLS == [{"n": 2}] and not Job.objects.exists()


def test_a_beating_heart_keeps_the_job():
    queue.enqueue("test.record")
    job = queue.claim("w1")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert queue.heartbeat(["w1"]) == 1
    assert queue.reap_stale() == []


def test_periodic_rows_are_one_per_name_and_go_round():
    ticks = []
    registry.PERIODIC["test.tick"] = registry.Periodic("test.tick", 30, lambda: ticks.append(1))
    try:
        queue.ensure_periodic(["test.tick"])
        queue.ensure_periodic(["test.tick"])  # a second server starting
        assert Job.objects.filter(unique_key="periodic:test.tick").count() == 1
        job = queue.claim("w1")
        run_job(job, "w1")
        row = Job.objects.get()
        assert ticks == [1]
        assert row.status == JobStatus.QUEUED and row.attempts == 0
        assert 29 <= (row.run_after - timezone.now()).total_seconds() <= 30
    finally:
        del registry.PERIODIC["test.tick"]


def test_backoff_doubles_and_is_capped():
    assert 0.9 <= queue.backoff_delay(1, 1, 100) <= 1.1
    assert 7.2 <= queue.backoff_delay(4, 1, 100) <= 8.8
    assert queue.backoff_delay(30, 1, 100) <= 110
