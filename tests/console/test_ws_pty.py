"""PTY sessions (docs/api.md §2.8): the `?channel=pty` WebSocket with a real shell on a real
pseudo terminal in a real sandbox, and the /pty REST routes."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from console.actor import Actor
from console.sandboxes import service as sandboxes
from tests.factories import api_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def terminal(sandbox, key: str, first: dict) -> tuple[WebsocketCommunicator, dict]:
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=pty", key)
    assert (await ws.connect())[0]
    await ws.send_json_to(first)
    return ws, await ws.receive_json_from(timeout=10)


async def output_until(ws, text: str) -> str:
    seen = ""
    while text not in seen:
        frame = await ws.receive_json_from(timeout=10)
        assert frame["type"] == "pty_output", (frame, seen)
        seen += frame["data"]
    return seen


async def test_shell_on_a_terminal(sandbox, api_key):
    ws, started = await terminal(
        sandbox, api_key[0], {"type": "pty_start", "id": "pty_1", "cols": 100, "rows": 40}
    )
    assert started["type"] == "pty_started" and started["id"] == "pty_1", started
    assert started["session_id"].startswith("ses_") and isinstance(started["pid"], int)
    assert (started["cols"], started["rows"], started["exec_id"]) == (100, 40, str(started["pid"]))

    session = {"id": "pty_1", "session_id": started["session_id"]}
    # The terminal echoes the command line; the quotes tell it apart from the output.
    await ws.send_json_to({"type": "pty_input", **session, "data": 'echo h""i\n'})
    assert "hi\r\n" in await output_until(ws, "hi\r\n")
    # It is a terminal: the shell sees it, and its size follows pty_resize.
    await ws.send_json_to({"type": "pty_resize", **session, "cols": 132, "rows": 50})
    await ws.send_json_to(
        {"type": "pty_input", **session, "data_base64": "dGVzdCAtdCAwICYmIHN0dHkgc2l6ZQo="}
    )  # "test -t 0 && stty size\n"
    assert "50 132" in await output_until(ws, "50 132")
    await ws.send_json_to({"type": "pty_input", **session, "data": "exit 3\n"})
    while (frame := await ws.receive_json_from(timeout=10))["type"] == "pty_output":
        pass
    assert frame == {"type": "pty_exited", "id": "pty_1", "session_id": started["session_id"],
                     "exit_code": 3}  # fmt: skip
    assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"


async def test_session_outlives_the_socket_and_the_rest_routes(sandbox, api_key, api):
    ws, started = await terminal(sandbox, api_key[0], {"type": "pty_start", "id": "pty_2"})
    assert (started["cols"], started["rows"]) == (120, 30)
    await ws.send_json_to({"type": "pty_input", "data": "echo marker-$((6*7))\n"})
    await output_until(ws, "marker-42")
    await ws.disconnect()
    # Leaving ends the reader thread (the shell keeps running).
    for _ in range(50):
        if not any(t.name.startswith("pty-ws-") for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
    assert not any(t.name.startswith("pty-ws-") for t in threading.enumerate())

    base = f"/v1/sandboxes/{sandbox.public_id}/pty"
    session_id, pid = started["session_id"], started["pid"]
    listed = (await database_sync_to_async(api.get)(base)).json()
    assert listed == [{"session_id": session_id, "pid": pid, "cols": 120, "rows": 30,
                       "exec_id": str(pid)}]  # fmt: skip
    resized = await database_sync_to_async(api.post)(
        f"{base}/{session_id}/resize", {"cols": 90, "rows": 20}, content_type="application/json"
    )
    assert resized.status_code == 200 and resized.json()["cols"] == 90
    got = (await database_sync_to_async(api.get)(f"{base}/{session_id}")).json()
    assert (got["cols"], got["rows"]) == (90, 20)  # read back from the terminal itself

    # Reattach by session id (what it printed so far is replayed), then by pid.
    ws, again = await terminal(
        sandbox, api_key[0], {"type": "pty_connect", "id": "pty_3", "session_id": session_id}
    )
    assert again == {"type": "pty_started", "id": "pty_3", **got}
    await output_until(ws, "marker-42")
    await ws.disconnect()
    ws, again = await terminal(sandbox, api_key[0], {"type": "pty_connect", "pid": pid})
    assert again["session_id"] == session_id
    await ws.send_json_to({"type": "pty_kill", "session_id": session_id})
    while (frame := await ws.receive_json_from(timeout=10))["type"] == "pty_output":
        pass
    assert frame["type"] == "pty_exited" and frame["exit_code"] == 137

    assert (await database_sync_to_async(api.get)(base)).json() == []
    missing = await database_sync_to_async(api.get)(f"{base}/{session_id}")
    assert missing.status_code == 404 and missing.json()["code"] == "pty_session_not_found"


async def test_delete_ends_a_session_and_refusals(sandbox, api_key, api, other_project):
    ws, started = await terminal(sandbox, api_key[0], {"type": "pty_start", "id": "pty_4"})
    base = f"/v1/sandboxes/{sandbox.public_id}/pty"
    gone = await database_sync_to_async(api.delete)(f"{base}/{started['session_id']}")
    assert gone.status_code == 204
    while (frame := await ws.receive_json_from(timeout=10))["type"] == "pty_output":
        pass
    assert frame["type"] == "pty_exited"

    ws, refused = await terminal(
        sandbox, api_key[0], {"type": "pty_connect", "id": "pty_5", "session_id": "ses_nope"}
    )
    assert refused["type"] == "error" and refused["code"] == "pty_session_not_found"
    ws, refused = await terminal(
        sandbox, api_key[0], {"type": "pty_start", "id": "pty_6", "cols": 0, "rows": 10}
    )
    assert refused["type"] == "error" and refused["code"] == "invalid_request"

    theirs, _ = await database_sync_to_async(sandboxes.create_sandbox)(other_project, actor=Actor())
    try:
        ws, refused = await terminal(theirs, api_key[0], {"type": "pty_start", "id": "pty_7"})
        assert refused["type"] == "error" and "not found" in refused["message"]
        listed = await database_sync_to_async(api.get)(f"/v1/sandboxes/{theirs.public_id}/pty")
        assert listed.status_code == 404
    finally:
        await database_sync_to_async(sandboxes.destroy_sandbox)(theirs, actor=Actor())
    await asyncio.sleep(0)


async def test_connect_replays_only_the_recent_output(sandbox, api_key, api):
    ws, started = await terminal(sandbox, api_key[0], {"type": "pty_start", "id": "pty_8"})
    await ws.send_json_to(
        {"type": "pty_input", "data": "head -c 300000 /dev/zero | tr '\\0' a; echo E\"\"ND\n"}
    )
    await output_until(ws, "aEND\r\n")
    await ws.disconnect()
    ws, again = await terminal(
        sandbox, api_key[0], {"type": "pty_connect", "session_id": started["session_id"]}
    )
    assert again["type"] == "pty_started"
    replayed = await output_until(ws, "aEND\r\n")
    assert 1000 < len(replayed) <= 64 * 1024
    assert "head -c" not in replayed  # the start of the session is not sent again
    await ws.send_json_to({"type": "pty_kill"})
    await ws.disconnect()
