"""The file watch WebSocket (/v1/sandboxes/{id}/ws, no query string; docs/api.md §2.7)
against the real routing, a real sandbox and real inotify."""

from __future__ import annotations

import asyncio
import posixpath
import threading

import pytest
from channels.db import database_sync_to_async
from watchdog.observers.api import BaseObserver, EventEmitter

from console.actor import Actor
from console.sandboxes import files as sandbox_files
from console.sandboxes import service as sandboxes
from console.sandboxes.api import file_watch_ws
from tests.factories import api_socket

pytestmark = pytest.mark.django_db(transaction=True)


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, BaseObserver | EventEmitter)]


async def open_watch(sandbox, key, path, *, recursive=False, timeout=None, watch_id="watch_1"):
    ws = api_socket(f"/v1/sandboxes/{sandbox.public_id}/ws", key)
    assert (await ws.connect())[0]
    await ws.send_json_to(
        {"type": "file_watch", "id": watch_id, "path": path, "user": None,
         "recursive": recursive, "timeout_secs": timeout}
    )  # fmt: skip
    return ws, await ws.receive_json_from(timeout=5)


async def events(ws, count: int, watched: str = "/workspace") -> list[tuple[str, str]]:
    got = []
    while len(got) < count:
        frame = await ws.receive_json_from(timeout=5)
        assert frame["type"] == "file_event" and frame["id"] == "watch_1", frame
        # The client's shape: `name` is relative to the watched directory.
        assert frame["name"] == posixpath.relpath(frame["path"], watched)
        got.append((frame["event"], frame["path"]))
    return got


async def test_changes_arrive_as_file_events(sandbox, workspace, api_key):
    ws, started = await open_watch(sandbox, api_key[0], "/workspace")
    assert started == {"type": "file_watch_started", "id": "watch_1"}

    # A process inside the sandbox creates and writes a file.
    request = sandboxes.exec_request({"command": "printf hi > made.txt", "shell": True})
    await database_sync_to_async(sandboxes.run_command)(sandbox, request)
    got = await events(ws, 2)
    assert got == [("create", "/workspace/made.txt"), ("write", "/workspace/made.txt")]
    assert await ws.receive_nothing(timeout=0.3)

    # The files API's atomic write is one event of the target, no temporary file: a
    # `create` of a new file, a `write` of an existing one, as a direct write would be.
    await asyncio.to_thread(sandbox_files.write_chunks, sandbox.public_id, "api.txt", [b"x"])
    assert await events(ws, 1) == [("create", "/workspace/api.txt")]
    await asyncio.to_thread(sandbox_files.write_chunks, sandbox.public_id, "api.txt", [b"y"])
    assert await events(ws, 1) == [("write", "/workspace/api.txt")]

    await asyncio.to_thread(sandbox_files.chmod, sandbox.public_id, "api.txt", "0600")
    await asyncio.to_thread(sandbox_files.rename, sandbox.public_id, "api.txt", "moved.txt")
    await asyncio.to_thread(sandbox_files.remove, sandbox.public_id, "made.txt")
    assert await events(ws, 3) == [
        ("chmod", "/workspace/api.txt"),
        ("rename", "/workspace/moved.txt"),
        ("remove", "/workspace/made.txt"),
    ]
    await ws.disconnect()


async def test_recursive_or_not(sandbox, workspace, api_key):
    (workspace / "sub").mkdir()
    flat, _ = await open_watch(sandbox, api_key[0], "/workspace")
    deep, started = await open_watch(sandbox, api_key[0], "/", recursive=True)
    assert started["type"] == "file_watch_started"
    (workspace / "sub" / "inner.txt").write_text("x")
    assert await events(deep, 1, "/") == [("create", "/workspace/sub/inner.txt")]
    assert await flat.receive_nothing(timeout=0.5)
    # A relative path is under /workspace, like every files API path.
    sub, started = await open_watch(sandbox, api_key[0], "sub")
    assert started["type"] == "file_watch_started"
    (workspace / "sub" / "second.txt").write_text("")
    assert await events(sub, 1, "/workspace/sub") == [("create", "/workspace/sub/second.txt")]
    for ws in (flat, deep, sub):
        await ws.disconnect()


async def test_escapes_and_bad_requests_are_refused(sandbox, workspace, api_key, tmp_path):
    (workspace / "out").symlink_to(tmp_path)
    (workspace / "file.txt").write_text("x")
    for path, says in [
        ("out", "not a directory"),  # a link to a host path leads nowhere inside the sandbox
        ("missing", "does not exist"),
        ("file.txt", "not a directory"),
    ]:
        ws, frame = await open_watch(sandbox, api_key[0], path)
        assert frame["type"] == "error" and frame["id"] == "watch_1", (path, frame)
        assert says in frame["message"], (path, frame)
        assert str(tmp_path) not in frame["message"]  # no host paths
        await ws.disconnect()
    ws, frame = await open_watch(sandbox, api_key[0], "/", timeout=-1)
    assert frame["type"] == "error" and "timeout_secs" in frame["message"]
    await ws.disconnect()
    assert not watch_threads()


async def test_another_projects_sandbox_is_not_found(runtime, other_project, api_key):
    theirs, _ = await database_sync_to_async(sandboxes.create_sandbox)(other_project, actor=Actor())
    try:
        ws, frame = await open_watch(theirs, api_key[0], "/workspace", watch_id="watch_x")
        assert frame["type"] == "error" and frame["id"] == "watch_x"
        assert "not found" in frame["message"]
        assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"
    finally:
        await database_sync_to_async(sandboxes.destroy_sandbox)(theirs, actor=Actor())


async def test_closing_the_socket_stops_the_observer(sandbox, workspace, api_key):
    before = len(watch_threads())
    ws, _ = await open_watch(sandbox, api_key[0], "/workspace", recursive=True)
    assert len(watch_threads()) > before
    await ws.disconnect()
    for _ in range(50):
        if not watch_threads():
            break
        await asyncio.sleep(0.1)
    assert watch_threads() == []


async def test_timeout_ends_the_watch_and_closes(sandbox, workspace, api_key, monkeypatch):
    """At its timeout the watch stops, but the socket stays open a while: the client ends
    its own loop at the same deadline and closes it (closing first reads as an error)."""
    monkeypatch.setattr(file_watch_ws, "IDLE_CLOSE_SECONDS", 1.0)
    ws, started = await open_watch(sandbox, api_key[0], "/workspace", timeout=0.5)
    assert started["type"] == "file_watch_started"
    assert await ws.receive_nothing(timeout=0.8)
    assert watch_threads() == []
    (workspace / "late.txt").write_text("after the deadline")
    assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"


async def test_removing_the_watched_directory_ends_the_watch(sandbox, workspace, api_key):
    (workspace / "gone").mkdir()
    ws, _ = await open_watch(sandbox, api_key[0], "gone")
    await asyncio.to_thread(sandbox_files.remove, sandbox.public_id, "gone")
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "error" and "/workspace/gone was removed" in frame["message"]
    assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"
