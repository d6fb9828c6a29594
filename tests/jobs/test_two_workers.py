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


def _drop(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
