"""Each sandbox's owner reconciles it, nobody else; a create cut by `kill -9` is failed
and frees its quota within 10 s of the owner coming back (docs/runtime-ownership.md).

Two live servers share one PostgreSQL database, each with its own runtime.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psycopg
import pytest

from tests.live import LiveServer, launch, start_live_server

pytestmark = [
    pytest.mark.cli,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="two servers on one database need PostgreSQL",
    ),
]


def sql(server: LiveServer, query: str, *args: object) -> list[tuple]:
    with psycopg.connect(server.env["DATABASE_URL"], autocommit=True) as conn:
        cursor = conn.execute(query, args)
        return cursor.fetchall() if cursor.description else []


def status(server: LiveServer, sandbox_id: str) -> str:
    return sql(server, "SELECT status FROM console_sandbox WHERE public_id = %s", sandbox_id)[0][0]


@pytest.fixture
def first(tmp_path):
    server = start_live_server(tmp_path / "a")
    yield server
    server.stop()


def test_a_second_server_leaves_the_first_ones_sandboxes_alone(first, tmp_path):
    ours = first.new_sandbox()
    second = start_live_server(tmp_path / "b", same_database_as=first)
    try:
        theirs = second.new_sandbox()
        owners = dict(sql(first, "SELECT public_id, owner FROM console_sandbox"))
        assert owners[ours] and owners[theirs] and owners[ours] != owners[theirs]
        # The second server's start-up reconcile has run (its own sandbox was made after
        # its worker started); it did not take the first one's sandbox for lost.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert status(first, ours) == "running"
            time.sleep(0.2)
        done = first.cli("sandbox", "exec", ours, "echo", "still-mine", check=True)
        assert done.stdout == "still-mine\n"
        # A restart of the second server again leaves the first one's sandbox alone.
        second.process.terminate()
        second.process.wait(timeout=15)
        launch(second)
        time.sleep(2)
        assert status(first, ours) == "running" and status(first, theirs) == "running"
    finally:
        second.stop()


def test_kill_9_during_a_create_fails_it_and_frees_the_quota(first):
    source = first.new_sandbox()
    # A large workspace makes a create from its snapshot slow enough to cut in the middle.
    first.cli(
        "sandbox", "exec", source, "--shell", "head -c 400M /dev/zero > big.bin", check=True
    )  # fmt: skip
    snapshot = json.loads(first.cli("snapshot", "create", source, check=True).stdout)["id"]
    first.cli("sandbox", "kill", source, check=True)
    sql(first, "UPDATE console_project SET max_running_sandboxes = 1 WHERE slug = 'main'")

    creating = threading.Thread(
        target=first.cli, args=("sandbox", "create", "--snapshot-id", snapshot), daemon=True
    )
    creating.start()
    deadline = time.monotonic() + 30
    rows: list[tuple] = []
    while not rows and time.monotonic() < deadline:
        rows = sql(first, "SELECT public_id FROM console_sandbox WHERE status = 'creating'")
        time.sleep(0.02)
    assert rows, "the create never showed up as `creating`"
    interrupted = rows[0][0]
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    creating.join(timeout=30)
    assert status(first, interrupted) == "creating"  # nobody else may touch it

    launch(first)
    back = time.monotonic()
    while status(first, interrupted) == "creating" and time.monotonic() - back < 10:
        time.sleep(0.1)
    assert status(first, interrupted) == "error", "not failed within 10 s of coming back"
    events = json.loads(
        first.cli("lifecycle", "events", "--sandbox-id", interrupted, check=True).stdout
    )["events"]
    failed = [e for e in events if e["operation"] == "create" and e["status"] == "failed"]
    assert failed and failed[0]["reason"] == "interrupted"
    # Its quota is free: the project's one running sandbox can be made at once.
    assert first.new_sandbox().startswith("sb_")
