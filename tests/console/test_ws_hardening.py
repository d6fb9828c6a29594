"""WebSocket hardening: a read-only key follows and watches but never starts, writes to
or kills anything, on every channel; frames and starts are rate-limited with HTTP
requests; console sockets open only from the console's own origin; output past the
per-process cap is reported as truncated, over the stream and in the blocking answer."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from console.actor import Actor
from console.runtime import get_driver
from console.sandboxes import pty as sandbox_pty
from console.sandboxes import service as sandboxes
from tests.factories import api_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(sandbox, key: str, channel: str | None) -> WebsocketCommunicator:
    query = f"?channel={channel}" if channel else ""
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws{query}", key)
    assert (await ws.connect())[0]
    return ws


async def _refused(ws: WebsocketCommunicator, frame: dict) -> dict:
    await ws.send_json_to(frame)
    while (answer := await ws.receive_json_from(timeout=10))["type"] == "pty_output":
        pass  # what the followed terminal prints meanwhile
    assert answer["type"] == "error" and answer["code"] == "permission_denied", answer
    return answer


async def _running(sandbox) -> list:
    return [p for p in await asyncio.to_thread(get_driver().processes, sandbox.public_id)]


async def test_read_only_key_cannot_start_anything(sandbox, read_key):
    before = await _running(sandbox)
    ws = await _open(sandbox, read_key[0], "exec")
    answer = await _refused(
        ws, {"type": "exec_start", "id": "e1", "command": "touch /workspace/pwned", "shell": True}
    )
    assert answer["id"] == "e1"
    ws2 = await _open(sandbox, read_key[0], "pty")
    await _refused(ws2, {"type": "pty_start", "id": "p1", "cols": 80, "rows": 24})
    await asyncio.sleep(0.3)
    assert await _running(sandbox) == before
    assert not await asyncio.to_thread(
        lambda: (get_driver().host_path(sandbox.public_id, "/workspace/pwned")).exists()
    )
    await ws.disconnect()
    await ws2.disconnect()


async def test_read_only_key_follows_a_shell_but_cannot_type_resize_or_kill(
    sandbox, read_key, api_key
):
    info = await database_sync_to_async(sandbox_pty.start)(sandbox, {"cols": 80, "rows": 24})
    ws = await _open(sandbox, read_key[0], "pty")
    await ws.send_json_to({"type": "pty_connect", "id": "p2", "session_id": info.session_id})
    started = await ws.receive_json_from(timeout=10)
    assert started["type"] == "pty_started" and started["pid"] == info.pid
    session = {"id": "p2", "session_id": info.session_id}
    await _refused(ws, {"type": "pty_input", **session, "data": "touch /workspace/typed\n"})
    await _refused(ws, {"type": "pty_resize", **session, "cols": 10, "rows": 10})
    await _refused(ws, {"type": "pty_kill", **session})
    # The owner's full key types; the read-only follower sees the output.
    writer = await _open(sandbox, api_key[0], "pty")
    await writer.send_json_to({"type": "pty_connect", "id": "w", "session_id": info.session_id})
    assert (await writer.receive_json_from(timeout=10))["type"] == "pty_started"
    await writer.send_json_to({"type": "pty_input", "id": "w", "data": 'echo se""en\n'})
    seen = ""
    while "seen\r\n" not in seen:
        frame = await ws.receive_json_from(timeout=10)
        if frame["type"] == "pty_output":
            seen += frame["data"]
    processes = await _running(sandbox)
    assert any(p.pid == info.pid and p.running for p in processes)
    await writer.send_json_to({"type": "pty_kill", "id": "w"})
    await ws.disconnect()
    await writer.disconnect()


async def test_read_only_key_attaches_to_exec_output_and_watches_files(sandbox, read_key):
    request = sandboxes.exec_request(
        {"command": "sleep 0.3; echo out", "shell": True}, background=True
    )
    pid = await database_sync_to_async(sandboxes.start_process)(sandbox, request)
    ws = await _open(sandbox, read_key[0], "exec")
    await ws.send_json_to({"type": "exec_connect", "id": "c", "pid": pid})
    frames = []
    while not frames or frames[-1]["type"] not in ("exec_exit", "error"):
        frames.append(await ws.receive_json_from(timeout=10))
    assert {"type": "exec_stdout", "data": "out\n"} in frames
    watcher = await _open(sandbox, read_key[0], None)
    await watcher.send_json_to({"type": "file_watch", "id": "w1", "path": "/workspace"})
    assert (await watcher.receive_json_from(timeout=10))["type"] == "file_watch_started"
    await watcher.disconnect()


async def test_lifecycle_socket_is_read_only_and_open_to_read_keys(read_key):
    ws = api_socket("/v1/lifecycle/ws", read_key[0])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "subscribe", "live_only": True})
    assert (await ws.receive_json_from(timeout=10))["type"] == "subscribed"
    await ws.disconnect()


async def test_websocket_frames_and_starts_share_the_keys_bucket(sandbox, api_key, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 60
    settings.API_RATE_BURST = 4
    ws = await _open(sandbox, api_key[0], None)  # the start takes a token: 3 left
    answers = []
    for n in range(5):
        await ws.send_json_to({"type": "file_watch", "id": f"w{n}", "path": "/workspace"})
        answers.append(await ws.receive_json_from(timeout=10))
    assert [a["type"] for a in answers[:3]] == ["file_watch_started"] * 3
    assert answers[3]["code"] == "rate_limit_exceeded" and answers[3]["id"] == "w3"
    # The same bucket answers HTTP too, and a new socket is refused at its start.
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key[0]}")
    response = await database_sync_to_async(client.get)("/v1/sandboxes")
    assert response.status_code == 429
    late = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws", api_key[0])
    await late.connect()
    refusal = await late.receive_json_from(timeout=10)
    assert refusal["code"] == "rate_limit_exceeded"
    assert (await late.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4429}
    await ws.disconnect()


async def _console_socket(user, project, sandbox_id, origin: str | None):
    from console.asgi import application

    client = Client()
    await database_sync_to_async(client.force_login)(user)
    path = f"/t/{project.team.slug}/p/{project.slug}/sandboxes/{sandbox_id}/exec/ws"
    headers = [(b"host", b"localhost"), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]  # fmt: skip
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def test_console_socket_only_from_the_consoles_origin(sandbox, project, member, settings):
    settings.SITE_URL = "http://console.acme.localhost:8000"
    settings.PREVIEW_DOMAIN = "preview.acme.localhost"
    settings.CSRF_TRUSTED_ORIGINS = [settings.SITE_URL, "https://ops.acme.localhost"]
    refused = [
        "http://8080-sb-other.preview.acme.localhost:8000",  # a page a sandbox serves
        "http://acme.localhost:8000",
        "http://console.acme.localhost:8001",
        "https://console.acme.localhost:8000",
        "null",
        None,
    ]
    for origin in refused:
        ws = await _console_socket(member, project, sandbox.public_id, origin)
        assert (await ws.connect())[0] is False, origin
    for origin in ("http://console.acme.localhost:8000", "https://ops.acme.localhost:443"):
        ws = await _console_socket(member, project, sandbox.public_id, origin)
        assert (await ws.connect())[0] is True, origin
        await ws.disconnect()


async def test_exec_output_past_the_cap_says_truncated(runtime, project, api_key, settings):
    from console.runtime.local import LocalDriver

    settings.EXEC_OUTPUT_MAX_BYTES = 64 * 1024
    settings.EXEC_RESPONSE_MAX_BYTES = 16 * 1024
    get_driver.cache_clear()
    assert isinstance(get_driver(), LocalDriver) and get_driver().max_output_bytes == 64 * 1024
    sandbox = (await database_sync_to_async(sandboxes.create_sandbox)(project, actor=Actor()))[0]
    command = "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo done >&2"
    # Blocking exec: at most the response cap of each stream, and it says so.
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key[0]}")
    answer = await database_sync_to_async(client.post)(
        f"/v1/sandboxes/{sandbox.public_id}/exec",
        {"command": command, "shell": True},
        content_type="application/json",
    )
    body = answer.json()
    assert answer.status_code == 200 and body["exit_code"] == 0
    assert len(body["stdout"]) == 16 * 1024 and body["truncated"] is True
    assert body["output_limit_bytes"] == 64 * 1024
    # Streamed: what was kept, then exec_truncated where the cap cut, then the exit.
    ws = await _open(sandbox, api_key[0], "exec")
    await ws.send_json_to({"type": "exec_start", "id": "big", "command": command, "shell": True})
    frames = []
    while not frames or frames[-1]["type"] not in ("exec_exit", "error"):
        frames.append(await ws.receive_json_from(timeout=20))
    streamed = sum(len(f.get("data", "")) for f in frames if f["type"] == "exec_stdout")
    assert streamed <= 64 * 1024
    assert {"type": "exec_truncated", "limit_bytes": 64 * 1024} in frames
    assert frames[-1] == {"type": "exec_exit", "exit_code": 0, "truncated": True}
    await ws.disconnect()
