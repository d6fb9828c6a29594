"""The exec and lifecycle WebSockets (docs/api.md §2.4, 7.3) through Channels' communicator."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from console.actor import Actor
from console.runtime import get_driver
from console.sandboxes import service as sandboxes
from tests.factories import api_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def frames_until(ws: WebsocketCommunicator, last: str, limit: int = 50) -> list[dict]:
    got = []
    for _ in range(limit):
        frame = await ws.receive_json_from(timeout=10)
        got.append(frame)
        if frame["type"] in (last, "error"):
            return got
    raise AssertionError(f"no {last} frame in {got}")


async def test_unauthorized_handshake_is_refused(sandbox):
    for key in (None, "nsk_wrong"):
        ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=exec", key)
        connected, _ = await ws.connect()
        assert connected is False
    ws = api_socket("/v1/lifecycle/ws", None)
    assert (await ws.connect())[0] is False


async def test_exec_streams_output_then_exit(sandbox, api_key):
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=exec", api_key[0])
    assert (await ws.connect())[0]
    await ws.send_json_to(
        {"type": "exec_start", "id": "exec_1", "command": "echo one; echo two >&2; exit 3",
         "args": [], "timeout_secs": 10, "shell": True}
    )  # fmt: skip
    frames = await frames_until(ws, "exec_exit")
    assert frames[0]["type"] == "exec_started" and isinstance(frames[0]["pid"], int)
    out = "".join(f["data"] for f in frames if f["type"] == "exec_stdout")
    err = "".join(f["data"] for f in frames if f["type"] == "exec_stderr")
    assert (out, err) == ("one\n", "two\n")
    assert frames[-1] == {"type": "exec_exit", "exit_code": 3}
    await ws.disconnect()


async def test_exec_connect_attaches_and_timeout_kills(sandbox, api_key):
    request = sandboxes.exec_request(
        {"command": "sleep 0.5; echo late", "shell": True}, background=True
    )
    pid = await database_sync_to_async(sandboxes.start_process)(sandbox, request)
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=exec", api_key[0])
    await ws.connect()
    await ws.send_json_to({"type": "exec_connect", "id": "exec_2", "pid": pid})
    frames = await frames_until(ws, "exec_exit")
    assert frames[0] == {"type": "exec_started", "pid": pid}
    assert {"type": "exec_stdout", "data": "late\n"} in frames
    await ws.disconnect()

    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=exec", api_key[0])
    await ws.connect()
    await ws.send_json_to(
        {
            "type": "exec_start",
            "id": "exec_3",
            "command": "sleep 30",
            "args": [],
            "timeout_secs": 1,
            "shell": True,
        }
    )
    frames = await frames_until(ws, "exec_exit")
    assert frames[-1]["type"] == "error" and "exec_timeout" in frames[-1]["message"]
    processes = await database_sync_to_async(get_driver().processes)(sandbox.public_id)
    assert not any(p.running for p in processes)
    await ws.disconnect()


async def test_other_project_and_unsupported_channels_answer_errors(
    runtime, sandbox, other_project, api_key
):
    theirs, _ = await database_sync_to_async(sandboxes.create_sandbox)(other_project, actor=Actor())
    try:
        ws = api_socket(f"/v1/sandboxes/{theirs.public_id}/ws?channel=exec", api_key[0])
        assert (await ws.connect())[0]
        frame = await ws.receive_json_from(timeout=5)
        assert frame["type"] == "error" and "not found" in frame["message"]
        ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=nope", api_key[0])
        await ws.connect()
        frame = await ws.receive_json_from(timeout=5)
        assert frame["type"] == "error" and "not supported" in frame["message"]
    finally:
        await database_sync_to_async(sandboxes.destroy_sandbox)(theirs, actor=Actor())


async def test_lifecycle_stream_replays_then_goes_live(sandbox, api_key):
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/lifecycle/ws", api_key[0])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "subscribe", "replay_limit": 100})
    subscribed = await ws.receive_json_from(timeout=5)
    assert subscribed["type"] == "subscribed"
    assert subscribed["subscription"]["sandbox_id"] == sandbox.public_id

    async def next_event() -> dict:
        message = await ws.receive_json_from(timeout=5)
        assert message["type"] == "event"
        return message["event"]

    replayed = [await next_event() for _ in range(2)]
    assert [(e["operation"], e["status"]) for e in replayed] == [
        ("create", "requested"),
        ("create", "succeeded"),
    ]
    await database_sync_to_async(sandboxes.pause_sandbox)(sandbox, actor=Actor())
    live = [await next_event() for _ in range(3)]
    assert [(e["operation"], e["status"]) for e in live] == [
        ("hibernate", "requested"),
        ("hibernate", "succeeded"),
        ("snapshot_created", "succeeded"),
    ]
    assert {e["sandbox_id"] for e in live} == {sandbox.public_id}
    assert live[2]["metadata"]["created_via"] == "hibernate"
    await ws.disconnect()

    # Reconnecting after the last seen event replays only what came later, in order.
    ws = api_socket("/v1/lifecycle/ws", api_key[0])
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "after_event_id": replayed[0]["id"]})
    assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
    again = [await next_event() for _ in range(4)]
    assert [e["id"] for e in again] == [e["id"] for e in [replayed[1], *live]]
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_invalid_frames_get_an_error_and_the_socket_stays_usable(sandbox, api_key):
    """A frame that is not a JSON object is answered, not a 1011 close (both channels)."""
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws?channel=exec", api_key[0])
    assert (await ws.connect())[0]
    for bad in ("not valid json{{{", "[1, 2]"):
        await ws.send_to(text_data=bad)
        answer = await ws.receive_json_from(timeout=5)
        assert answer["type"] == "error" and answer["message"].startswith("invalid message")
    await ws.send_json_to({"type": "exec_start", "command": "echo", "args": ["still-open"]})
    assert (await ws.receive_json_from(timeout=5))["type"] == "exec_started"
    await ws.disconnect()
    ws = api_socket("/v1/lifecycle/ws", api_key[0])
    await ws.connect()
    await ws.send_to(text_data="{oops")
    assert (await ws.receive_json_from(timeout=5))["message"].startswith("invalid message")
    await ws.send_json_to({"type": "subscribe", "live_only": True})
    assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
    await ws.disconnect()
