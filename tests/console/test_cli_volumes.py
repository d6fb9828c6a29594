"""The real `nullspace volume ...` and `sandbox create --volume` (0.1.9) against a live server:
every volume line of the CLI reference, each checked by its effect."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import VENV_BIN, remove_tree, start_live_server

pytestmark = pytest.mark.cli

QUOTA = 128 * 1024 * 1024


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(
        tmp_path_factory.mktemp("live-volumes"),
        MAX_FILE_BYTES=str(160 * 1024 * 1024),
        VOLUME_MAX_BYTES=str(QUOTA),
    )
    yield server
    server.stop()
    remove_tree(server.data_dir)


def ok(live, *args: str, **kwargs) -> str:
    return live.cli(*args, check=True, **kwargs).stdout


def as_json(live, *args: str, **kwargs):
    return json.loads(ok(live, *args, **kwargs))


def exists(live, name: str, path: str) -> bool:
    """`volume exists` prints {"exists": ...} and exits 1 when the path is absent."""
    result = live.cli("volume", "exists", name, path)
    assert result.returncode == (0 if json.loads(result.stdout)["exists"] else 1)
    return json.loads(result.stdout)["exists"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 1024 * 1024))
            out.write(chunk)
            left -= len(chunk)
    return path


@pytest.fixture
def volume(live, request):
    """A fresh volume named after the test; deleted (forced through the API) afterwards."""
    name = request.node.name.replace("_", "-")[:50]
    made = as_json(live, "volume", "create", name)
    yield made
    httpx.delete(
        f"{live.url}/v1/volumes/{made['id']}?force=true",
        headers={"Authorization": f"Bearer {live.api_key}"},
    )


def test_create_list_get_delete(live, volume):
    assert volume["name"] == "test-create-list-get-delete" and volume["status"] == "available"
    assert volume["id"] in ok(live, "volume", "list")  # a table
    listed = as_json(live, "volume", "list", "--json")
    assert [(v["id"], v["name"]) for v in listed] == [(volume["id"], volume["name"])]
    rows = ok(live, "volume", "list", "--fields", "id,name,mount_count,used_bytes")
    assert f"{volume['id']}\t{volume['name']}\t0\t0" in rows.splitlines()
    assert as_json(live, "volume", "get", volume["name"])["id"] == volume["id"]
    assert as_json(live, "volume", "get", volume["id"])["name"] == volume["name"]
    assert as_json(live, "volume", "get", volume["name"], "--fields", "id,status") == {
        "id": volume["id"],
        "status": "available",
    }
    assert ok(live, "volume", "delete", volume["id"]).strip() == f"Deleted {volume['id']}"
    missing = live.cli("volume", "get", volume["name"])
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_bad_and_duplicate_names(live, volume):
    bad = live.cli("volume", "create", "no/slash")
    assert bad.returncode == 2 and "volume name" in bad.stderr
    again = live.cli("volume", "create", volume["name"])
    assert again.returncode == 7 and "already exists" in again.stderr


def test_write_read_cat_stat_info_exists(live, volume):
    name = volume["name"]
    info = as_json(live, "volume", "write", name, "/hello.txt", input="hello")
    assert (info["path"], info["size"], info["is_dir"]) == ("/hello.txt", 5, False)
    assert ok(live, "volume", "read", name, "/hello.txt") == "hello"
    assert ok(live, "volume", "cat", name, "/hello.txt") == "hello"
    assert as_json(live, "volume", "stat", name, "/hello.txt")["size"] == 5
    assert as_json(live, "volume", "info", name, "/hello.txt")["type"] == "file"
    assert as_json(live, "volume", "exists", name, "/hello.txt")["exists"] is True
    absent = live.cli("volume", "exists", name, "/nope.txt")
    assert absent.returncode == 1 and json.loads(absent.stdout)["exists"] is False
    binary = live.cli("volume", "read", name, "/hello.txt", "--encoding", "base64", check=True)
    assert binary.stdout.strip() == "aGVsbG8="


def test_write_files_ls_mkdir_chmod_mv_rm(live, volume):
    name = volume["name"]
    written = as_json(
        live,
        "volume",
        "write-files",
        name,
        json.dumps([{"path": "/a.txt", "content": "a\n"}, {"path": "/b.txt", "content": "b\n"}]),
    )
    assert [f["path"] for f in written] == ["/a.txt", "/b.txt"]
    assert ok(live, "volume", "cat", name, "/b.txt") == "b\n"
    assert "Created /models" in ok(live, "volume", "mkdir", name, "/models")
    assert as_json(live, "volume", "stat", name, "/models")["is_dir"] is True
    listing = ok(live, "volume", "ls-files", name, "/")
    assert "a.txt" in listing and "models" in listing
    ok(live, "volume", "chmod", name, "/a.txt", "0600")
    assert as_json(live, "volume", "stat", name, "/a.txt")["mode"] == "0600"
    moved = as_json(live, "volume", "mv", name, "/a.txt", "/models/a.txt")
    assert moved["path"] == "/models/a.txt"
    assert not exists(live, name, "/a.txt")
    ok(live, "volume", "rm", name, "/models")
    assert not exists(live, name, "/models/a.txt")


def test_find_search_replace_dry_run(live, volume):
    name = volume["name"]
    as_json(live, "volume", "write", name, "/models/config.json", input='{"w": "old weights"}')
    as_json(live, "volume", "write", name, "/models/model.bin", input="bin")
    found = as_json(live, "volume", "find", name, "/models", "weights")
    assert found == [{"file": "/models/config.json", "line": 1, "content": '{"w": "old weights"}'}]
    assert as_json(live, "volume", "search", name, "/models", "*.bin") == ["/models/model.bin"]
    dry = as_json(live, "volume", "replace", name, "old", "new", "/models/config.json", "--dry-run")
    assert dry["dry_run"] is True and dry["replacements"] == 1
    assert "old weights" in ok(live, "volume", "cat", name, "/models/config.json")
    done = as_json(live, "volume", "replace", name, "old", "new", "/models/config.json")
    assert done["dry_run"] is False and done["files_modified"] == 1
    assert "new weights" in ok(live, "volume", "cat", name, "/models/config.json")


def test_upload_url_and_download_url(live, volume):
    name = volume["name"]
    target = as_json(live, "volume", "upload-url", name, "/models/model.bin")
    put = httpx.put(target["url"], content=b"put by url", timeout=30)  # no API key: signed
    assert put.status_code == 204
    url = ok(live, "volume", "download-url", name, "/models/model.bin").strip()
    assert httpx.get(url, timeout=30).content == b"put by url"
    tampered = httpx.get(url[:-3] + "AAA", timeout=30)
    assert tampered.status_code == 401


def test_watch_prints_volume_events(live, volume):
    name = volume["name"]
    ok(live, "volume", "mkdir", name, "/models/deep")
    proc = subprocess.Popen(
        [str(VENV_BIN / "nullspace"), "volume", "watch", name, "/models", "--recursive",
         "--timeout", "30"],
        cwd=live.data_dir, env=live.cli_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        event = None
        for n in range(30):  # the watcher prints nothing when it starts: probe until it sees one
            ok(live, "volume", "write", name, f"/models/probe-{n}.txt", input="x")
            try:
                event = json.loads(lines.get(timeout=1))
                break
            except queue.Empty:
                continue
        assert event is not None and event["path"].startswith("/models/probe-")
        while not lines.empty():
            lines.get()
        ok(live, "volume", "write", name, "/models/deep/w.txt", input="w")
        # A new file is a `create`; its name is relative to the watched directory.
        assert json.loads(lines.get(timeout=10)) == {
            "type": "create",
            "name": "deep/w.txt",
            "path": "/models/deep/w.txt",
            "event_type": "create",
        }
    finally:
        proc.kill()
        proc.wait()


def test_upload_direct_and_resumable_then_download(live, volume, tmp_path):
    name = volume["name"]
    small = random_file(tmp_path / "small.bin", 100_000)
    direct = as_json(live, "volume", "upload", name, str(small), "/models/small.bin", "--json")
    assert direct["transport"] == "direct"
    big = random_file(tmp_path / "model.bin", 20 * 1024 * 1024)
    resumable = as_json(
        live, "volume", "upload", name, str(big), "/models/model.bin",
        "--resumable", "always", "--concurrency", "4", "--json",
    )  # fmt: skip
    assert resumable["transport"] == "resumable"
    assert resumable["result"]["session"]["max_concurrency"] == 4
    back = tmp_path / "back.bin"
    ok(live, "volume", "download", name, "/models/model.bin", str(back), "--force")
    assert sha256(back) == sha256(big)
    ok(live, "volume", "download", name, "/models/small.bin", str(back), "--force")
    assert sha256(back) == sha256(small)
    # A directory: extracted by default, kept as a tar with --archive.
    extracted = tmp_path / "models"
    ok(live, "volume", "download", name, "/models", str(extracted))
    assert sha256(extracted / "model.bin") == sha256(big)
    archive = tmp_path / "models.tar"
    result = as_json(
        live, "volume", "download", name, "/models", str(archive), "--archive", "--json"
    )
    assert result["kind"] == "directory_archive" and result["archive_format"] == "tar"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.bin", "small.bin"]
    # And a directory upload lands as a tree.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.txt").write_text("x")
    as_json(live, "volume", "upload", name, str(tree), "/tree", "--json")
    assert ok(live, "volume", "cat", name, "/tree/sub/x.txt") == "x"


def _session(live, volume_id: str, upload_id: str) -> dict:
    return httpx.get(
        f"{live.url}/v1/volumes/{volume_id}/uploads/{upload_id}",
        headers={"Authorization": f"Bearer {live.api_key}"},
    ).json()


@pytest.mark.timeout(300)
def test_resumable_upload_killed_midway_then_resumed(live, volume, tmp_path):
    name = volume["name"]
    source = random_file(tmp_path / "data.bin", 100 * 1024 * 1024)  # 13 parts of 8 MiB
    proc = subprocess.Popen(
        [str(VENV_BIN / "nullspace"), "volume", "upload", name, str(source), "/data.bin",
         "--resumable", "always", "--concurrency", "1"],
        cwd=live.data_dir, env=live.cli_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    upload_id = None
    for line in proc.stderr:  # "Created upload session upl_..." comes first
        if "upl_" in line:
            upload_id = "upl_" + line.split("upl_", 1)[1].split()[0].strip(".)")
            break
    assert upload_id, "the CLI did not print its upload session"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = _session(live, volume["id"], upload_id)
        if state["accepted_bytes"] > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-way: the client is gone, parts stay staged
    proc.wait()
    state = _session(live, volume["id"], upload_id)
    assert state["status"] in ("uploading", "staged"), state
    assert 0 < state["accepted_bytes"] < state["content_length"], state
    assert state["next_part"] is not None
    assert not exists(live, name, "/data.bin")
    resumed = as_json(
        live, "volume", "upload", name, str(source), "--resume", upload_id,
        "--concurrency", "4", "--json",
    )  # fmt: skip
    assert resumed["resumed"] is True and resumed["result"]["upload_id"] == upload_id
    back = tmp_path / "back.bin"
    ok(live, "volume", "download", name, "/data.bin", str(back))
    assert sha256(back) == sha256(source)


@pytest.mark.timeout(120)
def test_concurrent_parts_of_one_session_land_in_place(live, volume, tmp_path):
    """Parts PUT at once (as `--concurrency 4` does) each land at their own offset of the
    one staged file; complete publishes exactly the source, and the CLI reads it back."""
    headers = {"Authorization": f"Bearer {live.api_key}"}
    base = f"{live.url}/v1/volumes/{volume['id']}/uploads"
    data = os.urandom(4 * 8 * 1024 * 1024 + 12345)
    created = httpx.post(
        base, headers=headers,
        json={"kind": "file", "target_path": "/par/allel.bin", "content_length": len(data)},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    session = created.json()["session"]
    size, upload_id = session["part_size"], session["upload_id"]
    answers: dict[int, int] = {}

    def put(number: int) -> None:
        part = data[number * size : (number + 1) * size]
        answers[number] = httpx.put(
            f"{base}/{upload_id}/parts/{number}", content=part, timeout=60,
            headers={**headers, "x-nullspace-part-sha256": hashlib.sha256(part).hexdigest()},
        ).status_code  # fmt: skip

    threads = [threading.Thread(target=put, args=(n,)) for n in range(session["part_count"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {n: 200 for n in range(session["part_count"])}
    done = httpx.post(
        f"{base}/{upload_id}/complete", headers=headers,
        json={"whole_checksum_sha256": hashlib.sha256(data).hexdigest()},
    )  # fmt: skip
    assert done.status_code == 200, done.text
    back = tmp_path / "back.bin"
    ok(live, "volume", "download", volume["name"], "/par/allel.bin", str(back))
    assert back.read_bytes() == data
    assert "nullspace-upload" not in ok(live, "volume", "ls-files", volume["name"], "/")


def test_quota_exceeded_leaves_no_partial_file(live, volume, tmp_path):
    name = volume["name"]
    first = random_file(tmp_path / "a.bin", 80 * 1024 * 1024)
    ok(live, "volume", "upload", name, str(first), "/a.bin", "--json")
    refused = live.cli("volume", "upload", name, str(first), "/b.bin", "--json")
    assert refused.returncode == 6, refused.stdout + refused.stderr
    assert json.loads(refused.stdout)["error"]["code"] == "volume_quota_exceeded"
    # Through a direct write too (a value, not a session).
    big = "x" * (45 * 1024 * 1024)  # 80 MiB + 45 MiB > the 128 MiB volume
    refused = live.cli("volume", "write", name, "/c.txt", input=big)
    assert refused.returncode == 6 and "full" in refused.stderr
    listing = ok(live, "volume", "ls-files", name, "/")
    assert "b.bin" not in listing and "c.txt" not in listing
    root = live.data_dir / "volumes" / "mnt" / volume["id"]
    assert sorted(os.listdir(root)) == ["a.bin"]  # no hidden temporary either
    info = as_json(live, "volume", "get", name)
    assert 80 * 1024 * 1024 <= info["used_bytes"] <= info["max_size_bytes"] <= QUOTA


@pytest.mark.timeout(600)  # one story of ~30 real CLI calls and three sandboxes
def test_two_sandboxes_share_a_volume_ro_refused_and_busy_delete(live, volume):
    name = volume["name"]
    writer = live.new_sandbox("--volume", f"ref={name},mount=/data")
    reader = live.new_sandbox(
        "--volume", f"ref={volume['id']},mount=/mnt/models,subpath=/models,ro=true"
    )
    try:
        shown = as_json(live, "sandbox", "get", writer)
        assert [(v["volume_id"], v["mount_path"], v["read_only"]) for v in shown["volumes"]] == [
            (volume["id"], "/data", False)
        ]
        ok(live, "sandbox", "exec", writer, "--shell",
           "mkdir -p /data/models && echo from-writer > /data/models/shared.txt")  # fmt: skip
        # At once through the volume API and in the other sandbox (its subpath, read-only).
        assert ok(live, "volume", "cat", name, "/models/shared.txt") == "from-writer\n"
        assert ok(live, "sandbox", "exec", reader, "--shell", "cat /mnt/models/shared.txt") == (
            "from-writer\n"
        )
        denied = live.cli("sandbox", "exec", reader, "--shell", "echo x > /mnt/models/new.txt")
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        # Through the files API too, with the code the client maps to its exit 5.
        refused = live.cli("sandbox", "file", "write", reader, "/mnt/models/new.txt", input="x")
        assert refused.returncode == 5 and "read-only volume" in refused.stderr, refused
        assert not exists(live, name, "/models/new.txt")
        # The other way round: the API writes, the sandbox reads.
        as_json(live, "volume", "write", name, "/models/from-api.txt", input="api")
        assert (
            ok(live, "sandbox", "exec", writer, "--shell", "cat /data/models/from-api.txt") == "api"
        )
        # A sandbox cannot write past the quota either.
        full = live.cli("sandbox", "exec", writer, "--shell",
                        "dd if=/dev/zero of=/data/fill bs=1M count=200")  # fmt: skip
        assert "No space left on device" in full.stderr
        ok(live, "sandbox", "exec", writer, "--shell", "rm /data/fill")
        info = as_json(live, "volume", "get", name)
        assert (info["mount_count"], info["status"]) == (2, "attached")
        busy = live.cli("volume", "delete", volume["id"])
        assert busy.returncode == 7 and "in use" in busy.stderr
        # Pause and resume, and a fork: the mount comes back; the data never left the volume.
        ok(live, "sandbox", "pause", writer)
        resumed = as_json(live, "sandbox", "resume", writer)  # the runtime moves to a new id
        writer = resumed["id"]
        assert [v["mount_path"] for v in resumed["volumes"]] == ["/data"]
        assert ok(live, "sandbox", "exec", writer, "--shell", "cat /data/models/shared.txt") == (
            "from-writer\n"
        )
        fork = as_json(live, "sandbox", "fork", writer)["id"]
        ok(live, "sandbox", "exec", fork, "--shell", "echo fork >> /data/models/shared.txt")
        ok(live, "sandbox", "kill", fork)
    finally:
        live.cli("sandbox", "kill", writer)
        live.cli("sandbox", "kill", reader)
    # The file outlives both sandboxes.
    assert ok(live, "volume", "read", name, "/models/shared.txt") == "from-writer\nfork\n"
    assert as_json(live, "volume", "get", name)["mount_count"] == 0
    assert ok(live, "volume", "delete", volume["id"]).startswith("Deleted")


def test_sandbox_create_refuses_bad_volume_specs(live, volume):
    missing = live.cli(
        "sandbox", "create", "--template", "base", "--volume", "ref=nope,mount=/data"
    )
    assert missing.returncode == 3 and "not found" in missing.stderr
    system = live.cli(
        "sandbox", "create", "--template", "base", "--volume", f"ref={volume['name']},mount=/etc"
    )
    assert system.returncode == 2 and "system directory" in system.stderr
