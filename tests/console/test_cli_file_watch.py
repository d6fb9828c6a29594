"""The real `nullspace sandbox file watch` (0.1.9) against a live server: file events as JSON lines."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

import pytest

from tests.live import VENV_BIN

pytestmark = pytest.mark.cli


def start_watch(live, *args: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen(
        [str(VENV_BIN / "nullspace"), "sandbox", "file", "watch", *args],
        cwd=live.data_dir, env=live.cli_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    return proc, lines


def wait_for_event(live, sandbox_id, lines: queue.Queue, path: str) -> dict:
    """Write probe files until the watcher reports one (it prints nothing when it starts)."""
    deadline = time.monotonic() + 30
    n = 0
    while time.monotonic() < deadline:
        n += 1
        live.cli(
            "sandbox", "file", "write", sandbox_id, f"{path}/probe-{n}.txt", input="x", check=True
        )
        try:
            return json.loads(lines.get(timeout=1))
        except queue.Empty:
            continue
    raise AssertionError("the watcher printed no event within 30 s")


def test_watch_prints_events_of_cli_writes(live, sandbox_id):
    live.cli("sandbox", "file", "mkdir", sandbox_id, "/workspace/w/deep", check=True)
    proc, lines = start_watch(live, sandbox_id, "/workspace/w", "--recursive", "--timeout", "40")
    try:
        probe = wait_for_event(live, sandbox_id, lines, "/workspace/w")
        assert probe["type"] == "create" and probe["path"].startswith("/workspace/w/probe-")
        while not lines.empty():
            lines.get()
        live.cli("sandbox", "file", "write", sandbox_id, "/workspace/w/deep/hello.txt",
                 input="hi", check=True)  # fmt: skip
        event = json.loads(lines.get(timeout=10))
        # A new file is a `create`; `name` is relative to the watched directory.
        assert event == {
            "type": "create",
            "name": "deep/hello.txt",
            "path": "/workspace/w/deep/hello.txt",
            "event_type": "create",
        }
        live.cli("sandbox", "file", "write", sandbox_id, "/workspace/w/deep/hello.txt",
                 input="again", check=True)  # fmt: skip
        assert json.loads(lines.get(timeout=10))["type"] == "write"
        live.cli("sandbox", "file", "rm", sandbox_id, "/workspace/w/deep/hello.txt", check=True)
        assert json.loads(lines.get(timeout=10))["type"] == "remove"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_watch_timeout_ends_the_command(live, sandbox_id):
    started = time.monotonic()
    result = live.cli("sandbox", "file", "watch", sandbox_id, "/workspace", "--timeout", "2",
                      timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 2 <= time.monotonic() - started < 20


def test_watch_refuses_a_missing_directory(live, sandbox_id):
    result = live.cli(
        "sandbox", "file", "watch", sandbox_id, "/no/such/dir", "--timeout", "5", timeout=30
    )
    assert result.returncode != 0
    assert "does not exist" in result.stderr, result.stderr
