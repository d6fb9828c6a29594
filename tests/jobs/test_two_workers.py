"""`manage.py worker` processes on one database (SQLite in CI's first run, PostgreSQL in
its second): two share a backlog of webhook deliveries and send each exactly once; a
worker killed mid-delivery has its job taken back by another once its heartbeat is stale."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import ROOT, _fresh_database_url
from tests.webhook_receiver import Receiver

DELIVERIES = 60
SECRET = "whsec_" + "QUJD" * 8

SETUP = """
from console.models import Project
from console.webhooks import service
project = Project.objects.get(name="main")
hook = service.create_webhook(project, url={url!r}, operations=["create"], signing_secret={secret!r})
for _ in range({count}):
    service.send_test_event(hook)
"""

STATUSES = """
from console.models import Delivery
print(sorted(set(Delivery.objects.values_list("delivery_status", "attempt_count"))))
"""


@dataclass
class Site:
    """A migrated database of its own, with a project, and the environment to reach it."""

    env: dict[str, str]
    logs: Path
    workers: list[subprocess.Popen]

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return done.stdout

    def queue_test_events(self, receiver: Receiver, count: int) -> None:
        setup = SETUP.format(url=receiver.url, secret=receiver.secret, count=count)
        self.manage("shell", "-c", setup)

    def statuses(self) -> str:
        """The distinct (delivery_status, attempt_count) pairs, e.g. [('succeeded', 1)]."""
        return self.manage("shell", "-c", STATUSES).strip().splitlines()[-1]

    def start_worker(self, threads: int) -> subprocess.Popen:
        log = open(self.logs / f"worker{len(self.workers)}.log", "wb")
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--threads", str(threads)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.workers.append(worker)
        return worker


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(tmp_path),
        WEBHOOK_ALLOW_PRIVATE_TARGETS="1",
        PYTHONUNBUFFERED="1",
    )
    fresh = _fresh_database_url()
    if fresh:
        env["DATABASE_URL"] = fresh
    else:
        env.pop("DATABASE_URL", None)
    made = Site(env=env, logs=tmp_path, workers=[])
    made.manage("migrate", "--noinput")
    made.manage("bootstrap", "--email", "w@example.com", "--team", "w", "--project", "main")
    try:
        yield made
    finally:
        for worker in made.workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)
        if fresh:
            _drop(fresh)


def _drop(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(secret=SECRET).start()
    yield made
    made.stop()


def test_two_worker_processes_never_send_one_delivery_twice(site, receiver):
    site.queue_test_events(receiver, DELIVERIES)
    site.start_worker(threads=3)
    site.start_worker(threads=3)
    receiver.wait_for(lambda got: len(got) >= DELIVERIES, timeout=60)
    time.sleep(1.0)  # room for a duplicate to show up, were there one
    sent = Counter(r.message_id for r in receiver.received)
    assert len(sent) == DELIVERIES
    assert max(sent.values()) == 1, "a delivery was sent twice"
    assert all(r.verified for r in receiver.received)
    assert site.statuses() == "[('succeeded', 1)]"
    for n in range(2):
        assert "Traceback" not in (site.logs / f"worker{n}.log").read_text()


def test_a_killed_workers_delivery_is_taken_back_by_another(site, receiver):
    """kill -9 a worker in the middle of an attempt: once its heartbeat is stale (2 s
    here), another worker claims the job and delivers; the receiver sees the same
    webhook-id again (delivery is at least once)."""
    receiver.hold_first = 30
    site.env["JOB_STALE_SECONDS"] = "2"
    site.queue_test_events(receiver, 1)
    first = site.start_worker(threads=1)
    receiver.wait_for(lambda got: len(got) == 1, timeout=30)  # held by the receiver
    first.kill()  # SIGKILL: no clean-up, the job row stays `running`
    first.wait(timeout=10)
    site.start_worker(threads=1)
    seen = receiver.wait_for(lambda got: len(got) == 2, timeout=30)
    assert seen[0].message_id == seen[1].message_id and seen[1].status == 200
    deadline = time.monotonic() + 10
    while site.statuses() != "[('succeeded', 1)]" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert site.statuses() == "[('succeeded', 1)]"


def test_on_postgresql_a_queued_job_wakes_a_worker_of_another_process(site, receiver):
    """The worker polls only once a minute here: the delivery arrives well before that
    only because enqueue's NOTIFY woke it."""
    if "DATABASE_URL" not in site.env:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite workers poll")
    import psycopg

    site.env["JOB_POLL_MS"] = "60000"
    site.start_worker(threads=1)
    with psycopg.connect(site.env["DATABASE_URL"], autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listening = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN console_jobs'"
            ).fetchone()[0]
            if listening:
                break
            time.sleep(0.2)
        assert listening, "the worker never started listening"
    queued_at = time.monotonic()
    site.queue_test_events(receiver, 1)
    receiver.wait_for(lambda got: len(got) == 1, timeout=40)
    assert time.monotonic() - queued_at < 50  # the next poll would be a minute away
