"""The real `nullspace` CLI 0.1.9 against a live server (daphne + worker in a subprocess):
every sandbox, process, snapshot and lifecycle command, each checked on real effects."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from console.runtime.local import LocalDriver
from tests.live import LiveServer, remove_tree, start_live_server

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-sandboxes")
    live = start_live_server(tmp)
    yield live
    live.stop()
    # The server is gone: clear what its sandboxes left (network namespaces, processes).
    runtime(live).reconcile(set())
    remove_tree(tmp)


def runtime(server: LiveServer) -> LocalDriver:
    """The live server's runtime, read from its files (any process can drive it)."""
    return LocalDriver(root=server.data_dir / "sandboxes", subnet="10.213.0.0/16", netns="auto")


def cli_json(server: LiveServer, *args: str, **kwargs):
    result = server.cli(*args, check=True, **kwargs)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def sandbox(server):
    info = cli_json(
        server, "sandbox", "create", "--template", "base", "--cwd", "/workspace",
        "--metadata-json", '{"team": "eval", "run": "7"}', "--env", "A=1",
        "--env-json", '{"B": "2"}', "--on-timeout", "pause", "--auto-resume", "--timeout", "900",
    )  # fmt: skip
    return info


def workspace(server: LiveServer, sandbox_id: str) -> Path:
    return server.data_dir / "sandboxes" / sandbox_id / "workspace"


def test_doctor_passes(server):
    report = cli_json(server, "doctor", "--json")
    assert report["ok"] is True, report
    assert server.cli("doctor").returncode == 0


def test_create_stores_everything_asked(server, sandbox):
    assert sandbox["status"] == "running" and sandbox["template"] == "base"
    assert sandbox["metadata"] == {"team": "eval", "run": "7"}
    assert sandbox["cwd"] == "/workspace"
    assert sandbox["timeout_action"] == "hibernate"
    got = cli_json(server, "sandbox", "get", sandbox["id"])
    assert got["id"] == sandbox["id"] and got["status"] == "running"
    result = server.cli("sandbox", "exec", sandbox["id"], "--shell", "echo $A$B; pwd", check=True)
    assert result.stdout == "12\n/workspace\n"


def test_list_filters(server, sandbox):
    other = cli_json(server, "sandbox", "create", "--template", "base", "--metadata", "team=prod")
    rows = cli_json(
        server, "sandbox", "list", "--state", "running", "--template", "base",
        "--metadata", "team=eval", "--json",
    )  # fmt: skip
    assert [r["id"] for r in rows] == [sandbox["id"]]
    everything = {r["id"] for r in cli_json(server, "sandbox", "list", "--json")}
    assert {sandbox["id"], other["id"]} <= everything
    slim = cli_json(server, "sandbox", "list", "--fields", "id,status", "--json")
    assert all(set(r) == {"id", "status"} for r in slim)
    server.cli("sandbox", "kill", other["id"], check=True)
    assert other["id"] not in {r["id"] for r in cli_json(server, "sandbox", "list", "--json")}


def test_exec_writes_files_and_reports_exit_codes(server, sandbox):
    sid = sandbox["id"]
    server.cli("sandbox", "exec", sid, "--shell", "echo hello > note.txt", check=True)
    assert (workspace(server, sid) / "note.txt").read_text() == "hello\n"
    failed = server.cli("sandbox", "exec", sid, "--shell", "echo oops >&2; exit 4")
    assert failed.returncode == 4 and failed.stderr == "oops\n"
    as_json = cli_json(server, "sandbox", "exec", sid, "--json", "python3", "-c", "print(6*7)")
    assert as_json["stdout"] == "42\n" and as_json["exit_code"] == 0
    timed_out = server.cli("sandbox", "exec", sid, "--timeout", "1", "--shell", "sleep 30")
    assert timed_out.returncode == 8 and "timeout" in timed_out.stderr.lower()


def test_long_exec_does_not_block_other_requests(server, sandbox):
    headers = {"Authorization": f"Bearer {server.api_key}"}
    done = {}

    def long_exec():
        body = {"command": "sleep 4", "shell": True, "timeout_secs": 10, "background": False}
        response = httpx.post(
            f"{server.url}/v1/sandboxes/{sandbox['id']}/exec",
            json=body,
            headers=headers,
            timeout=20,
        )
        done["status"] = response.status_code

    worker = threading.Thread(target=long_exec)
    worker.start()
    time.sleep(0.5)
    began = time.monotonic()
    for _ in range(5):
        assert (
            httpx.get(f"{server.url}/v1/sandboxes", headers=headers, timeout=5).status_code == 200
        )
    assert time.monotonic() - began < 2.0
    assert "status" not in done  # the exec was still running meanwhile
    worker.join(timeout=20)
    assert done["status"] == 200


def test_timeout_set(server, sandbox):
    info = cli_json(
        server,
        "sandbox",
        "timeout",
        "set",
        sandbox["id"],
        "--seconds",
        "1200",
        "--action",
        "hibernate",
    )
    assert info["timeout_ms"] == 1_200_000 and info["timeout_action"] == "hibernate"
    refused = server.cli("sandbox", "timeout", "set", sandbox["id"], "--seconds", str(10**7))
    assert refused.returncode == 2 and "limit" in refused.stderr


def test_metrics(server, sandbox):
    samples = cli_json(server, "sandbox", "metrics", sandbox["id"], "--json")
    assert len(samples) == 1
    assert samples[0]["cpu_count"] >= 1 and samples[0]["mem_total_bytes"] > 0


def test_processes(server, sandbox):
    sid = sandbox["id"]
    started = server.cli(
        "sandbox", "exec", sid, "--background", "--shell", "read x; echo got:$x", check=True
    )
    pid = int(started.stdout.split()[-1])
    listed = server.cli("sandbox", "process", "list", sid, check=True).stdout
    assert f"{pid}\trunning" in listed
    sent = server.cli("sandbox", "process", "stdin", sid, str(pid), input="hi\n", check=True)
    assert "Sent 3 bytes" in sent.stdout
    attached = server.cli("sandbox", "process", "attach", sid, str(pid), timeout=30)
    assert attached.returncode == 0 and "got:hi" in attached.stdout
    logs = server.cli("sandbox", "process", "logs", sid, str(pid), check=True)
    assert logs.stdout == "got:hi\n"
    sleeper = int(
        server.cli(
            "sandbox", "exec", sid, "--background", "sleep", "300", check=True
        ).stdout.split()[-1]
    )
    server.cli("sandbox", "process", "kill", sid, str(sleeper), check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = cli_json(server, "sandbox", "process", "list", sid, "--json")
        if not next(r["running"] for r in rows if r["pid"] == sleeper):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("killed process still running")
    streamed = server.cli(
        "sandbox",
        "process",
        "stream",
        sid,
        "--shell",
        "for i in 1 2 3; do echo line$i; sleep 0.1; done; exit 5",
    )
    assert streamed.returncode == 5 and streamed.stdout == "line1\nline2\nline3\n"


def _answers(address: tuple[str, int]) -> bool:
    try:
        return (
            httpx.get(f"http://{address[0]}:{address[1]}/note.txt", timeout=1.5).text == "hello\n"
        )
    except httpx.HTTPError:
        return False


def _until(predicate, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_http_server_pause_and_resume(server, sandbox):
    """The issue's "done when": serve 8080, find it through the runtime, pause, resume."""
    sid = sandbox["id"]
    started = server.cli(
        "sandbox", "exec", sid, "--background", "python3", "-m", "http.server", "8080", "--bind", "0.0.0.0",
        check=True,
    )  # fmt: skip
    assert started.stdout.startswith("Started process")
    address = runtime(server).upstream(sid, 8080)
    assert _until(lambda: _answers(address)), f"port 8080 of {sid} never answered at {address}"
    snapshot = cli_json(server, "sandbox", "pause", sid)
    assert snapshot["sandbox_id"] == sid and snapshot["id"].startswith("snap_")
    info = cli_json(server, "sandbox", "get", sid)
    assert info["status"] == "paused" and info["snapshot_id"] == snapshot["id"]
    assert not _answers(address)
    resumed = cli_json(server, "sandbox", "resume", snapshot["id"])
    assert resumed["id"] == sid and resumed["status"] == "running"
    assert _until(lambda: _answers(address), 10)
    # A command on a paused sandbox auto-resumes it through its snapshot id (Sandbox.connect).
    cli_json(server, "sandbox", "pause", sid)
    assert server.cli("sandbox", "exec", sid, "cat", "note.txt", check=True).stdout == "hello\n"
    assert cli_json(server, "sandbox", "get", sid)["status"] == "running"


def test_two_sandboxes_serve_the_same_port(server):
    """Each sandbox has its own port space: both serve 8080 at once, each its own content."""
    ids = [cli_json(server, "sandbox", "create", "--template", "base")["id"] for _ in range(2)]
    try:
        for sid in ids:
            server.cli("sandbox", "exec", sid, "--shell", f"echo {sid} > index.txt", check=True)
            server.cli(
                "sandbox", "exec", sid, "--background", "python3", "-m", "http.server", "8080",
                check=True,
            )  # fmt: skip
        driver = runtime(server)

        def body(sid: str) -> str:
            host, port = driver.upstream(sid, 8080)
            try:
                return httpx.get(f"http://{host}:{port}/index.txt", timeout=1.5).text
            except httpx.HTTPError:
                return ""

        for sid in ids:
            assert _until(lambda sid=sid: body(sid) == f"{sid}\n"), sid
        # `hibernate` and resume by sandbox id (not snapshot id) act on one sandbox only.
        snap = cli_json(server, "sandbox", "hibernate", ids[0])
        assert snap["sandbox_id"] == ids[0]
        assert body(ids[0]) == "" and body(ids[1]) == f"{ids[1]}\n"
        assert cli_json(server, "sandbox", "resume", ids[0])["status"] == "running"
        assert _until(lambda: body(ids[0]) == f"{ids[0]}\n")
    finally:
        for sid in ids:
            server.cli("sandbox", "kill", sid)


def test_fork(server, sandbox):
    child = cli_json(server, "sandbox", "fork", sandbox["id"])
    assert child["id"] != sandbox["id"] and child["status"] == "running"
    assert (workspace(server, child["id"]) / "note.txt").read_text() == "hello\n"
    server.cli("sandbox", "kill", child["id"], check=True)


def test_snapshots(server, sandbox):
    sid = sandbox["id"]
    made = cli_json(server, "snapshot", "create", sid)
    also = cli_json(server, "sandbox", "snapshot", "create", sid)
    assert made["sandbox_id"] == sid and made["size_bytes"] > 0
    ids = {s["id"] for s in cli_json(server, "snapshot", "list", "--sandbox-id", sid)}
    assert {made["id"], also["id"]} <= ids
    assert {s["id"] for s in cli_json(server, "sandbox", "snapshot", "list", sid)} == ids
    assert cli_json(server, "snapshot", "list", "--metadata", "team=nobody") == []
    assert cli_json(server, "snapshot", "get", made["id"])["id"] == made["id"]
    restored = cli_json(server, "sandbox", "create", "--snapshot-id", made["id"])
    assert (workspace(server, restored["id"]) / "note.txt").read_text() == "hello\n"
    server.cli("sandbox", "kill", restored["id"], check=True)
    server.cli("snapshot", "delete", made["id"], check=True)
    missing = server.cli("snapshot", "get", made["id"])
    assert missing.returncode == 3


def test_lifecycle_events_and_stream(server, sandbox):
    sid = sandbox["id"]
    listed = cli_json(server, "lifecycle", "events", "--sandbox-id", sid, "--order", "asc")
    ops = [e["operation"] for e in listed["events"]]
    assert ops[0] == "create" and {"hibernate", "resume_from_snapshot", "timeout_updated"} <= set(
        ops
    )
    streamed = server.cli(
        "lifecycle", "stream", "--sandbox-id", sid, "--operation", "create", "--max-events", "1", "--timeout", "10",
        check=True,
    )  # fmt: skip
    event = json.loads(streamed.stdout.splitlines()[0])
    assert event["sandbox_id"] == sid and event["operation"] == "create"


def test_kill_last(server, sandbox):
    sid = sandbox["id"]
    killed = cli_json(server, "sandbox", "kill", sid, "--json")
    assert killed == {"id": sid, "status": "destroyed"}
    assert server.cli("sandbox", "kill", sid, check=True).stdout == f"Killed {sid}\n"
    assert cli_json(server, "sandbox", "get", sid)["status"] == "destroyed"
    assert not workspace(server, sid).exists()
    gone = server.cli("sandbox", "exec", sid, "true")
    assert gone.returncode == 3
    assert server.cli("sandbox", "get", "sb_doesnotexist").returncode == 3
