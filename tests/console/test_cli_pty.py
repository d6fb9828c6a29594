"""The real `nullspace sandbox pty ...` (0.1.9) against a live server."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cli


def test_create_list_resize_connect_kill(live, sandbox_id):
    created = json.loads(
        live.cli("sandbox", "pty", "create", sandbox_id, "--cols", "100", "--rows", "40",
                 check=True).stdout
    )  # fmt: skip
    session_id = created["session_id"]
    assert session_id.startswith("ses_") and (created["cols"], created["rows"]) == (100, 40)

    # The session outlives the `create` command's socket.
    listed = json.loads(live.cli("sandbox", "pty", "list", sandbox_id, check=True).stdout)
    assert [s["session_id"] for s in listed] == [session_id]
    live.cli("sandbox", "pty", "resize", sandbox_id, session_id, "--cols", "80", "--rows", "24",
             check=True)  # fmt: skip
    got = json.loads(live.cli("sandbox", "pty", "get", sandbox_id, session_id, check=True).stdout)
    assert (got["pid"], got["cols"], got["rows"]) == (created["pid"], 80, 24)

    # Piped stdin goes to the terminal; the command ends with the shell's exit code.
    result = live.cli("sandbox", "pty", "connect", sandbox_id, "--session-id", session_id,
                      "--timeout", "20", input='stty size; echo h""i; exit 7\n')  # fmt: skip
    assert result.returncode == 7, (result.stdout, result.stderr)
    assert "\n24 80\nhi\n" in result.stdout  # text mode: \r\n read as \n

    assert json.loads(live.cli("sandbox", "pty", "list", sandbox_id, check=True).stdout) == []
    missing = live.cli("sandbox", "pty", "get", sandbox_id, session_id)
    assert missing.returncode == 3 and "No running PTY session" in missing.stderr


def test_kill_ends_a_session(live, sandbox_id):
    created = json.loads(live.cli("sandbox", "pty", "create", sandbox_id, check=True).stdout)
    live.cli("sandbox", "pty", "kill", sandbox_id, created["session_id"], check=True)
    assert json.loads(live.cli("sandbox", "pty", "list", sandbox_id, check=True).stdout) == []
