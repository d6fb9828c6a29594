"""`nullspace monitor stream` against a live server, and a WebSocket path nothing
serves: a typed refusal (error frame, close 4404), never a 500 with a traceback."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from tests.live import VENV_BIN


def _lines(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_monitor_stream_prints_the_fleet_with_processes(live, sandbox_id):
    live.cli("sandbox", "exec", sandbox_id, "--background", "sleep", "120", check=True)
    result = live.cli(
        "monitor", "stream",
        "--include-processes", "--interval-ms", "1000",
        "--max-events", "5", "--timeout", "20",
    )  # fmt: skip
    events = _lines(result)
    assert len(events) == 5
    snapshot = events[0]
    assert snapshot["id"].startswith("monitor_")
    assert sandbox_id in [s["id"] for s in snapshot["sandboxes"]]
    mine = next(s for s in snapshot["sandboxes"] if s["id"] == sandbox_id)
    assert mine["status"] == "running" and mine["config"]["vcpus"] >= 1
    metrics = [e for e in events if "metrics" in e and e["sandbox_id"] == sandbox_id]
    processes = [e for e in events if "processes" in e and e["sandbox_id"] == sandbox_id]
    assert metrics and processes
    assert metrics[0]["metrics"]["mem_used_bytes"] > 0
    assert metrics[0]["metrics"]["cpu_count"] >= 1
    assert any("sleep" in p["command"] and p["running"] for p in processes[0]["processes"])
    # One sample per interval: two rounds (metrics + processes each) after the snapshot.
    assert [("metrics" in e, "processes" in e) for e in events[1:]] == [
        (True, False),
        (False, True),
    ] * 2


def test_monitor_stream_reports_a_sandbox_that_comes_and_goes(live):
    # A long interval: no metrics rounds, only the snapshot and the updates.
    stream = subprocess.Popen(
        [str(VENV_BIN / "nullspace"), "monitor", "stream", "--interval-ms", "60000",
         "--timeout", "10"],
        cwd=live.data_dir, env=live.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the snapshot first
        made = live.new_sandbox()
        live.cli("sandbox", "kill", made, check=True)
        out, err = stream.communicate(timeout=30)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert "sandboxes" in events[0]
    updates = [e for e in events if "removed" in e and e["sandbox_id"] == made]
    assert updates, (out, err)
    assert updates[0]["removed"] is False and updates[0]["sandbox"]["id"] == made
    assert updates[-1]["removed"] is True and updates[-1]["sandbox"] is None


def test_monitor_refuses_an_interval_it_cannot_honour(live):
    events = _lines(
        live.cli("monitor", "stream", "--interval-ms", "5", "--max-events", "1", "--timeout", "10")
    )
    assert events == [{"id": events[0]["id"], "message": events[0]["message"]}]
    assert "interval_ms must be from 250" in events[0]["message"]


@pytest.mark.parametrize("path", ["/v1/nothing/here/ws", "/v1/monitor/wss", "/not-a-route/ws"])
def test_an_unknown_websocket_path_is_refused_with_a_type(live, path):
    url = live.url.replace("http://", "ws://") + path
    headers = {"Authorization": f"Bearer {live.api_key}", "Origin": live.url}
    with ws_client.connect(url, additional_headers=headers, open_timeout=10) as sock:
        frame = json.loads(sock.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            sock.recv(timeout=10)
    assert frame["type"] == "error" and frame["code"] == "not_found"
    assert path in frame["message"]
    # daphne drops close reasons (uvicorn passes `not_found`); the frame carries the code.
    assert closed.value.rcvd.code == 4404
    log = live.log_path.read_text()
    assert "Traceback" not in log and "No route found" not in log
