"""The real `nullspace` CLI 0.1.9 against a live server (daphne + worker in a subprocess):
every sandbox, process, snapshot and lifecycle command, each checked on real effects."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import LiveServer

pytestmark = pytest.mark.cli


def runtime(live: LiveServer):
    """The live server's runtime, read from its files (any process can drive it)."""
    return live.driver()


def cli_json(live: LiveServer, *args: str, **kwargs):
    result = live.cli(*args, check=True, **kwargs)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def sandbox(live):
    info = cli_json(
        live, "sandbox", "create", "--template", "base", "--cwd", "/workspace",
        "--metadata-json", '{"team": "eval", "run": "7"}', "--env", "A=1",
        "--env-json", '{"B": "2"}', "--on-timeout", "pause", "--auto-resume", "--timeout", "900",
    )  # fmt: skip
    return info


def workspace(live: LiveServer, sandbox_id: str) -> Path:
    return live.data_dir / "sandboxes" / sandbox_id / "workspace"


def read(live: LiveServer, sandbox_id: str, path: str) -> str:
    with live.driver().files(sandbox_id).open_read(path) as handle:
        return handle.read().decode()


def test_doctor_passes(live):
    report = cli_json(live, "doctor", "--json")
    assert report["ok"] is True, report
    assert live.cli("doctor").returncode == 0


def test_create_stores_everything_asked(live, sandbox):
    assert sandbox["status"] == "running" and sandbox["template"] == "base"
    assert sandbox["metadata"] == {"team": "eval", "run": "7"}
    assert sandbox["cwd"] == "/workspace"
    assert sandbox["timeout_action"] == "hibernate"
    got = cli_json(live, "sandbox", "get", sandbox["id"])
    assert got["id"] == sandbox["id"] and got["status"] == "running"
    result = live.cli("sandbox", "exec", sandbox["id"], "--shell", "echo $A$B; pwd", check=True)
    assert result.stdout == "12\n/workspace\n"


def test_list_filters(live, sandbox):
    other = cli_json(live, "sandbox", "create", "--template", "base", "--metadata", "team=prod")
    rows = cli_json(
        live, "sandbox", "list", "--state", "running", "--template", "base",
        "--metadata", "team=eval", "--json",
    )  # fmt: skip
    assert [r["id"] for r in rows] == [sandbox["id"]]
    everything = {r["id"] for r in cli_json(live, "sandbox", "list", "--json")}
    assert {sandbox["id"], other["id"]} <= everything
    slim = cli_json(live, "sandbox", "list", "--fields", "id,status", "--json")
    assert all(set(r) == {"id", "status"} for r in slim)
    live.cli("sandbox", "kill", other["id"], check=True)
    assert other["id"] not in {r["id"] for r in cli_json(live, "sandbox", "list", "--json")}


def test_exec_writes_files_and_reports_exit_codes(live, sandbox):
    sid = sandbox["id"]
    live.cli("sandbox", "exec", sid, "--shell", "echo hello > note.txt", check=True)
    assert read(live, sid, "/workspace/note.txt") == "hello\n"
    failed = live.cli("sandbox", "exec", sid, "--shell", "echo oops >&2; exit 4")
    assert failed.returncode == 4 and failed.stderr == "oops\n"
    as_json = cli_json(live, "sandbox", "exec", sid, "--json", "python3", "-c", "print(6*7)")
    assert as_json["stdout"] == "42\n" and as_json["exit_code"] == 0
    timed_out = live.cli("sandbox", "exec", sid, "--timeout", "1", "--shell", "sleep 30")
    assert timed_out.returncode == 8 and "timeout" in timed_out.stderr.lower()


def test_long_exec_does_not_block_other_requests(live, sandbox):
    headers = {"Authorization": f"Bearer {live.api_key}"}
    done = {}

    def long_exec():
        body = {"command": "sleep 4", "shell": True, "timeout_secs": 10, "background": False}
        response = httpx.post(
            f"{live.url}/v1/sandboxes/{sandbox['id']}/exec",
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
        assert httpx.get(f"{live.url}/v1/sandboxes", headers=headers, timeout=5).status_code == 200
    assert time.monotonic() - began < 2.0
    assert "status" not in done  # the exec was still running meanwhile
    worker.join(timeout=20)
    assert done["status"] == 200


def test_timeout_set(live, sandbox):
    info = cli_json(
        live,
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
    refused = live.cli("sandbox", "timeout", "set", sandbox["id"], "--seconds", str(10**7))
    assert refused.returncode == 2 and "limit" in refused.stderr


def test_metrics(live, sandbox):
    samples = cli_json(live, "sandbox", "metrics", sandbox["id"], "--json")
    assert len(samples) == 1
    assert samples[0]["cpu_count"] >= 1 and samples[0]["mem_total_bytes"] > 0


def test_processes(live, sandbox):
    sid = sandbox["id"]
    started = live.cli(
        "sandbox", "exec", sid, "--background", "--shell", "read x; echo got:$x", check=True
    )
    pid = int(started.stdout.split()[-1])
    listed = live.cli("sandbox", "process", "list", sid, check=True).stdout
    assert f"{pid}\trunning" in listed
    sent = live.cli("sandbox", "process", "stdin", sid, str(pid), input="hi\n", check=True)
    assert "Sent 3 bytes" in sent.stdout
    attached = live.cli("sandbox", "process", "attach", sid, str(pid), timeout=30)
    assert attached.returncode == 0 and "got:hi" in attached.stdout
    logs = live.cli("sandbox", "process", "logs", sid, str(pid), check=True)
    assert logs.stdout == "got:hi\n"
    sleeper = int(
        live.cli("sandbox", "exec", sid, "--background", "sleep", "300", check=True).stdout.split()[
            -1
        ]
    )
    live.cli("sandbox", "process", "kill", sid, str(sleeper), check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = cli_json(live, "sandbox", "process", "list", sid, "--json")
        if not next(r["running"] for r in rows if r["pid"] == sleeper):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("killed process still running")
    streamed = live.cli(
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


def test_http_server_pause_and_resume(live):
    """The issue's "done when": serve 8080, find it through the runtime, pause, resume."""
    sid = live.new_sandbox()
    live.cli("sandbox", "exec", sid, "--shell", "echo hello > note.txt", check=True)
    started = live.cli(
        "sandbox", "exec", sid, "--background", "python3", "-m", "http.server", "8080", "--bind", "0.0.0.0",
        check=True,
    )  # fmt: skip
    assert started.stdout.startswith("Started process")
    address = runtime(live).upstream(sid, 8080)
    assert _until(lambda: _answers(address)), f"port 8080 of {sid} never answered at {address}"
    snapshot = cli_json(live, "sandbox", "pause", sid)
    assert snapshot["sandbox_id"] == sid and snapshot["id"].startswith("snap_")
    info = cli_json(live, "sandbox", "get", sid)
    assert info["status"] == "paused" and info["snapshot_id"] == snapshot["id"]
    assert not _answers(address)
    resumed = cli_json(live, "sandbox", "resume", snapshot["id"])
    # Resumed under a new id, processes and all: the server answers again, same address.
    new_id = resumed["id"]
    assert new_id != sid and resumed["status"] == "running"
    assert _until(lambda: _answers(address), 10)
    assert live.cli("sandbox", "get", sid).returncode == 3  # the paused id is gone
    # A command on a paused sandbox auto-resumes it through its snapshot id (Sandbox.connect).
    cli_json(live, "sandbox", "pause", new_id)
    assert live.cli("sandbox", "exec", new_id, "cat", "note.txt", check=True).stdout == "hello\n"
    assert live.cli("sandbox", "get", new_id).returncode == 3
    events = cli_json(live, "lifecycle", "events", "--source-sandbox-id", new_id)["events"]
    successor = next(
        e["target_sandbox_id"]
        for e in events
        if e["operation"] == "resume_from_snapshot"
        and e["status"] == "succeeded"
        and e["source_sandbox_id"] == new_id
    )
    assert cli_json(live, "sandbox", "get", successor)["status"] == "running"
    live.cli("sandbox", "kill", successor, check=True)


def test_two_sandboxes_serve_the_same_port(live):
    """Each sandbox has its own port space: both serve 8080 at once, each its own content."""
    ids = [cli_json(live, "sandbox", "create", "--template", "base")["id"] for _ in range(2)]
    try:
        for sid in ids:
            live.cli("sandbox", "exec", sid, "--shell", f"echo {sid} > index.txt", check=True)
            live.cli(
                "sandbox", "exec", sid, "--background", "python3", "-m", "http.server", "8080",
                check=True,
            )  # fmt: skip
        driver = runtime(live)

        def body(sid: str) -> str:
            host, port = driver.upstream(sid, 8080)
            try:
                return httpx.get(f"http://{host}:{port}/index.txt", timeout=1.5).text
            except httpx.HTTPError:
                return ""

        for sid in ids:
            assert _until(lambda sid=sid: body(sid) == f"{sid}\n"), sid
        # `hibernate` and resume by sandbox id (not snapshot id) act on one sandbox only.
        snap = cli_json(live, "sandbox", "hibernate", ids[0])
        assert snap["sandbox_id"] == ids[0]
        assert body(ids[0]) == "" and body(ids[1]) == f"{ids[1]}\n"
        resumed = cli_json(live, "sandbox", "resume", ids[0])
        assert resumed["status"] == "running" and resumed["id"] != ids[0]
        # The runtime was handed over: still served under its first id's runtime.
        assert _until(lambda: body(ids[0]) == f"{ids[0]}\n")
        ids.append(resumed["id"])
    finally:
        for sid in ids:
            live.cli("sandbox", "kill", sid)


def test_fork(live, sandbox):
    child = cli_json(live, "sandbox", "fork", sandbox["id"])
    assert child["id"] != sandbox["id"] and child["status"] == "running"
    assert read(live, child["id"], "/workspace/note.txt") == "hello\n"
    live.cli("sandbox", "kill", child["id"], check=True)


def test_snapshots(live, sandbox):
    sid = sandbox["id"]
    made = cli_json(live, "snapshot", "create", sid)
    also = cli_json(live, "sandbox", "snapshot", "create", sid)
    assert made["sandbox_id"] == sid and made["size_bytes"] > 0
    ids = {s["id"] for s in cli_json(live, "snapshot", "list", "--sandbox-id", sid)}
    assert {made["id"], also["id"]} <= ids
    assert {s["id"] for s in cli_json(live, "sandbox", "snapshot", "list", sid)} == ids
    assert cli_json(live, "snapshot", "list", "--metadata", "team=nobody") == []
    assert cli_json(live, "snapshot", "get", made["id"])["id"] == made["id"]
    restored = cli_json(live, "sandbox", "create", "--snapshot-id", made["id"])
    assert read(live, restored["id"], "/workspace/note.txt") == "hello\n"
    live.cli("sandbox", "kill", restored["id"], check=True)
    live.cli("snapshot", "delete", made["id"], check=True)
    missing = live.cli("snapshot", "get", made["id"])
    assert missing.returncode == 3


def test_lifecycle_events_and_stream(live, sandbox):
    sid = sandbox["id"]
    cli_json(live, "sandbox", "timeout", "set", sid, "--seconds", "600")
    listed = cli_json(live, "lifecycle", "events", "--sandbox-id", sid, "--order", "asc")
    pairs = [(e["operation"], e["status"]) for e in listed["events"]]
    assert pairs[:2] == [("create", "requested"), ("create", "succeeded")]
    assert ("timeout_updated", "succeeded") in pairs
    streamed = live.cli(
        "lifecycle", "stream", "--sandbox-id", sid, "--operation", "create", "--max-events", "1", "--timeout", "10",
        check=True,
    )  # fmt: skip
    event = json.loads(streamed.stdout.splitlines()[0])
    assert event["sandbox_id"] == sid and event["operation"] == "create"


def test_kill_last(live, sandbox):
    sid = sandbox["id"]
    killed = cli_json(live, "sandbox", "kill", sid, "--json")
    assert killed == {"id": sid, "status": "destroyed"}
    assert live.cli("sandbox", "kill", sid, check=True).stdout == f"Killed {sid}\n"
    assert live.cli("sandbox", "get", sid).returncode == 3  # gone means gone
    assert not workspace(live, sid).exists()
    gone = live.cli("sandbox", "exec", sid, "true")
    assert gone.returncode == 3
    assert live.cli("sandbox", "get", "sb_doesnotexist").returncode == 3


def test_the_cli_references_python_and_git_examples(live):
    """The CLI reference's examples that need python and git, run as the default user."""
    sid = live.new_sandbox("--timeout", "300")
    try:
        streamed = live.cli(
            "sandbox", "process", "stream", sid, "python", "-c", "print('hi')", check=True
        )
        assert streamed.stdout == "hi\n"
        who = live.cli("sandbox", "exec", sid, "--shell", "whoami; sudo -n whoami", check=True)
        assert who.stdout.split() == ["user", "root"]
        live.cli("sandbox", "exec", sid, "--shell", "git init -q /workspace", check=True)
        live.cli(
            "sandbox", "file", "write", sid, "/workspace/app.py", input="print(1)\n", check=True
        )
        live.cli(
            "sandbox", "git", "commit", sid, "update files", "--path", "/workspace", check=True
        )
        status = live.cli("sandbox", "git", "status", sid, "--path", "/workspace", check=True)
        log = live.cli(
            "sandbox", "exec", sid, "--shell", "git -C /workspace log --format='%an|%s'", check=True
        )
        assert log.stdout.strip() == "Sandbox User|update files", (log.stdout, status.stdout)
        ran = live.cli("sandbox", "exec", sid, "--shell", "cd /workspace && python app.py")
        assert ran.returncode == 0 and ran.stdout == "1\n"
    finally:
        live.cli("sandbox", "kill", sid)
