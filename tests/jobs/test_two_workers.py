"""Two `manage.py worker` processes on one database (PostgreSQL in CI's second run,
SQLite in the first) share a backlog of webhook deliveries: each is sent exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

from tests.live import ROOT, _fresh_database_url
from tests.webhook_receiver import Receiver

DELIVERIES = 60

SETUP = """
from console.models import Project
from console.webhooks import service
project = Project.objects.get(name="main")
hook = service.create_webhook(project, url={url!r}, operations=["create"], signing_secret={secret!r})
for _ in range({count}):
    service.send_test_event(hook)
"""

COUNT = """
from console.models import Delivery
print(sorted(set(Delivery.objects.values_list("delivery_status", "attempt_count"))))
"""


def test_two_worker_processes_never_send_one_delivery_twice(tmp_path):
    env = dict(os.environ)
    env.update(DATA_DIR=str(tmp_path), WEBHOOK_ALLOW_PRIVATE_TARGETS="1", PYTHONUNBUFFERED="1")
    fresh = _fresh_database_url()
    if fresh:
        env["DATABASE_URL"] = fresh
    else:
        env.pop("DATABASE_URL", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return done.stdout

    receiver = Receiver(secret="whsec_" + "QUJD" * 8).start()
    workers: list[subprocess.Popen] = []
    try:
        manage("migrate", "--noinput")
        manage("bootstrap", "--email", "w@example.com", "--team", "w", "--project", "main")
        manage(
            "shell", "-c",
            SETUP.format(url=receiver.url, secret=receiver.secret, count=DELIVERIES),
        )  # fmt: skip
        for n in range(2):
            log = open(tmp_path / f"worker{n}.log", "wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "worker", "--threads", "3"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
        receiver.wait_for(lambda got: len(got) >= DELIVERIES, timeout=60)
        time.sleep(1.0)  # room for a duplicate to show up, were there one
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        receiver.stop()
    sent = Counter(r.message_id for r in receiver.received)
    assert len(sent) == DELIVERIES
    assert max(sent.values()) == 1, "a delivery was sent twice"
    assert all(r.verified for r in receiver.received)
    assert manage("shell", "-c", COUNT).strip().splitlines()[-1] == "[('succeeded', 1)]"
    for n in range(2):
        assert "Traceback" not in (tmp_path / f"worker{n}.log").read_text()
    if fresh:
        _drop(fresh)


def test_a_killed_workers_delivery_is_taken_back_by_another(tmp_path):
    """kill -9 a worker in the middle of an attempt: once its heartbeat is stale, another
    worker claims the job and delivers (the receiver sees the same webhook-id again)."""
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(tmp_path),
        WEBHOOK_ALLOW_PRIVATE_TARGETS="1",
        JOB_STALE_SECONDS="2",
        PYTHONUNBUFFERED="1",
    )
    fresh = _fresh_database_url()
    if fresh:
        env["DATABASE_URL"] = fresh
    else:
        env.pop("DATABASE_URL", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return done.stdout

    def worker() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--threads", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    receiver = Receiver(secret="whsec_" + "QUJD" * 8, hold_first=30).start()
    first = second = None
    try:
        manage("migrate", "--noinput")
        manage("bootstrap", "--email", "w@example.com", "--team", "w", "--project", "main")
        manage("shell", "-c", SETUP.format(url=receiver.url, secret=receiver.secret, count=1))
        first = worker()
        receiver.wait_for(lambda got: len(got) == 1, timeout=30)  # held by the receiver
        first.kill()  # SIGKILL: no clean-up, the job row stays `running`
        first.wait(timeout=10)
        began = time.monotonic()
        second = worker()
        seen = receiver.wait_for(lambda got: len(got) == 2, timeout=30)
        taken_back_after = time.monotonic() - began
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        receiver.stop()
    assert seen[0].message_id == seen[1].message_id and seen[1].attempt == 2
    assert 1.5 < taken_back_after < 20  # not before the heartbeat went stale
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = manage("shell", "-c", COUNT).strip().splitlines()[-1]
        if status == "[('succeeded', 1)]":
            break
        time.sleep(0.3)
    assert status == "[('succeeded', 1)]"
    if fresh:
        _drop(fresh)


def _drop(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
