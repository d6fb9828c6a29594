"""Processes: env and cwd, stdin, logs and exit codes, streaming, kill."""

from __future__ import annotations

import os
import time

import pytest

from console.runtime.base import ExecRequest, PathRefused, ProcessMissing, RuntimeError_
from tests.runtime.conftest import get, put, run, start


def test_env_and_cwd(driver, make_sandbox, monkeypatch):
    monkeypatch.setenv("CONSOLE_ONLY_SECRET", "must-not-leak")
    sandbox_id = make_sandbox(envs={"FROM_SANDBOX": "one", "OVERRIDDEN": "sandbox"})
    driver.files(sandbox_id).makedirs("/workspace/sub")
    pid = driver.start_process(
        sandbox_id,
        ExecRequest(
            'echo "$FROM_SANDBOX $FROM_CREATE $FROM_REQUEST $OVERRIDDEN|$CONSOLE_ONLY_SECRET|$HOME"; pwd',
            shell=True,
            envs={"FROM_REQUEST": "three", "OVERRIDDEN": "request"},
        ),
        default_cwd="/workspace",
        envs={"FROM_CREATE": "two"},
    )
    assert driver.wait_process(sandbox_id, pid, 10) == 0
    line, cwd = driver.process_logs(sandbox_id, pid).stdout.splitlines()
    values, secret, home = line.split("|")
    assert values == "one two three request"
    assert secret == ""  # the console's own environment never reaches a sandbox
    assert cwd == "/workspace" and home == "/home/user"
    code, logs = run(driver, sandbox_id, "pwd; touch made-here", cwd="/workspace/sub")
    assert code == 0
    assert logs.stdout.strip().endswith("/sub")
    assert driver.files(sandbox_id).exists("/workspace/sub/made-here")


def test_workspace_is_shared_with_the_file_api(driver, make_sandbox):
    sandbox_id = make_sandbox()
    put(driver, sandbox_id, "in.txt", "from the api")
    code, logs = run(driver, sandbox_id, "cat /workspace/in.txt; echo -n back > /workspace/out.txt")
    assert (code, logs.stdout) == (0, "from the api")
    assert get(driver, sandbox_id, "/workspace/out.txt") == "back"


def test_argv_commands_and_missing_programs(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = driver.start_process(
        sandbox_id,
        ExecRequest("python3", args=["-c", "import sys; print(sys.argv[1:])", "a b", "$c"]),
        default_cwd="/workspace",
        envs={},
    )
    assert driver.wait_process(sandbox_id, pid, 10) == 0
    assert driver.process_logs(sandbox_id, pid).stdout == "['a b', '$c']\n"
    assert driver.processes(sandbox_id)[0].command.startswith("python3 -c")
    with pytest.raises(RuntimeError_) as err:
        driver.start_process(
            sandbox_id, ExecRequest("no-such-program-xyz"), default_cwd="/workspace", envs={}
        )
    assert err.value.code == "command_not_found"  # the caller's mistake: a 400, not a 500
    with pytest.raises(PathRefused):
        driver.start_process(
            sandbox_id, ExecRequest("true", cwd="/no/such/dir"), default_cwd="/workspace", envs={}
        )


def test_stdin_reaches_the_process(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = start(driver, sandbox_id, 'read a; read b; echo "got $a and $b"')
    driver.write_stdin(sandbox_id, pid, b"first\n")
    driver.write_stdin(sandbox_id, pid, b"second\n")
    assert driver.wait_process(sandbox_id, pid, 10) == 0
    assert driver.process_logs(sandbox_id, pid).stdout == "got first and second\n"
    with pytest.raises(ProcessMissing):
        driver.write_stdin(sandbox_id, pid, b"too late\n")
    # stdin=False: the process reads EOF at once instead of waiting.
    pid = driver.start_process(
        sandbox_id, ExecRequest("cat; echo eof", shell=True, stdin=False), default_cwd="", envs={}
    )
    assert driver.wait_process(sandbox_id, pid, 10) == 0
    assert driver.process_logs(sandbox_id, pid).stdout == "eof\n"


def test_logs_and_exit_codes(driver, make_sandbox):
    sandbox_id = make_sandbox()
    code, logs = run(
        driver, sandbox_id, "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2; exit 3"
    )
    assert code == 3 and logs.exit_code == 3
    assert logs.stdout == "out1\nout2\n"
    assert logs.stderr == "err1\n"
    assert logs.output == "out1\nerr1\nout2\n"  # interleaved in arrival order

    pid = start(driver, sandbox_id, "sleep 300")
    assert driver.wait_process(sandbox_id, pid, 0.2) is None
    assert driver.process_logs(sandbox_id, pid).exit_code is None
    info = {p.pid: p for p in driver.processes(sandbox_id)}[pid]
    assert info.running and info.command == "sleep 300"
    driver.kill_process(sandbox_id, pid)
    assert driver.wait_process(sandbox_id, pid, 5) == 137  # SIGKILL, as a shell reports it
    assert not {p.pid: p for p in driver.processes(sandbox_id)}[pid].running
    driver.kill_process(sandbox_id, pid)  # already gone: nothing to do
    with pytest.raises(ProcessMissing):
        driver.process_logs(sandbox_id, 999_999_999)


def test_kill_ends_the_process_group(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = start(driver, sandbox_id, "sleep 301 & sleep 302 & wait")
    time.sleep(0.2)
    children = [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _cmdline(p).startswith(("sleep 301", "sleep 302"))
    ]
    assert len(children) == 2
    driver.kill_process(sandbox_id, pid)
    assert driver.wait_process(sandbox_id, pid, 5) == 137
    time.sleep(0.1)
    assert not [p for p in children if os.path.exists(f"/proc/{p}") and _state(p) != "Z"]


def test_follow_output_streams_as_it_arrives(driver, make_sandbox):
    sandbox_id = make_sandbox()
    began = time.monotonic()
    pid = start(
        driver, sandbox_id, "echo one; sleep 0.6; echo two >&2; sleep 0.6; echo three; exit 4"
    )
    events = []
    for event in driver.follow_output(sandbox_id, pid):
        events.append((round(time.monotonic() - began, 2), event))
    kinds = [(e.kind, e.data, e.exit_code) for _, e in events]
    assert kinds == [
        ("stdout", "one\n", None),
        ("stderr", "two\n", None),
        ("stdout", "three\n", None),
        ("exit", "", 4),
    ]
    # Each piece arrived while the process was still running, not all at the end.
    assert events[0][0] < 0.5 and 0.5 < events[1][0] < 1.1 and events[3][0] >= 1.2


def test_follow_output_attaches_late_and_stops_after(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = start(driver, sandbox_id, "echo early; sleep 300")
    time.sleep(0.2)
    began = time.monotonic()
    events = list(driver.follow_output(sandbox_id, pid, stop_after=0.3))
    assert [e.data for e in events] == ["early\n"]  # replayed from the start, no exit yet
    assert 0.25 < time.monotonic() - began < 1.5
    driver.kill_process(sandbox_id, pid)
    assert list(driver.follow_output(sandbox_id, pid))[-1].exit_code == 137


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
