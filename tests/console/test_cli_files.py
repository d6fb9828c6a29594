"""The real `nullspace` 0.1.9 CLI against a live server: `sandbox file ...` and `sandbox upload`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def workspace(live, sandbox_id) -> Path:
    return live.workspace(sandbox_id)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_write_read_info_list(live, sandbox_id, workspace):
    wrote = live.cli(
        "sandbox",
        "file",
        "write",
        sandbox_id,
        "cli/hello.txt",
        "--json",
        input="hi from cli\n",
        check=True,
    )
    assert json.loads(wrote.stdout)["path"] == "/workspace/cli/hello.txt"
    assert (workspace / "cli/hello.txt").read_text() == "hi from cli\n"
    assert (
        live.cli("sandbox", "file", "read", sandbox_id, "cli/hello.txt", check=True).stdout
        == "hi from cli\n"
    )
    info = json.loads(
        live.cli(
            "sandbox", "file", "info", sandbox_id, "/workspace/cli/hello.txt", check=True
        ).stdout
    )
    assert (info["name"], info["size"], info["type"]) == ("hello.txt", 12, "file")
    listed = json.loads(
        live.cli("sandbox", "file", "list", sandbox_id, "--json", check=True).stdout
    )
    assert "/workspace" in {entry["path"] for entry in listed}  # `/` is the sandbox's root
    listed = json.loads(
        live.cli("sandbox", "file", "list", sandbox_id, "/workspace", "--json", check=True).stdout
    )
    assert "/workspace/cli" in {entry["path"] for entry in listed}
    deep = live.cli(
        "sandbox", "file", "list", sandbox_id, "/workspace", "--depth", "2", check=True
    ).stdout
    assert "/workspace/cli/hello.txt" in deep


def test_binary_write_and_base64_read(live, sandbox_id, workspace):
    blob = bytes(range(256))
    encoded = base64.b64encode(blob).decode()
    live.cli(
        "sandbox",
        "file",
        "write",
        sandbox_id,
        "bin/blob",
        "--encoding",
        "base64",
        input=encoded,
        check=True,
    )
    assert (workspace / "bin/blob").read_bytes() == blob
    assert (
        live.cli(
            "sandbox", "file", "read", sandbox_id, "bin/blob", "--encoding", "base64", check=True
        ).stdout
        == encoded
    )
    refused = live.cli("sandbox", "file", "read", sandbox_id, "bin/blob")
    assert refused.returncode == 2 and "base64" in refused.stderr


def test_exists_mkdir_mv_chmod_rm(live, sandbox_id, workspace):
    assert live.cli(
        "sandbox", "file", "mkdir", sandbox_id, "ops/a/b", check=True
    ).stdout.startswith("Created")
    assert (workspace / "ops/a/b").is_dir()
    (workspace / "ops/a/file.txt").write_text("x")
    exists = live.cli("sandbox", "file", "exists", sandbox_id, "ops/a/file.txt", check=True)
    assert json.loads(exists.stdout)["exists"] is True
    missing = live.cli("sandbox", "file", "exists", sandbox_id, "ops/nope")
    assert missing.returncode == 1 and json.loads(missing.stdout)["exists"] is False
    moved = json.loads(
        live.cli(
            "sandbox", "file", "mv", sandbox_id, "ops/a/file.txt", "ops/b.txt", check=True
        ).stdout
    )
    assert moved["path"] == "/workspace/ops/b.txt" and (workspace / "ops/b.txt").exists()
    live.cli("sandbox", "file", "chmod", sandbox_id, "ops/b.txt", "0750", check=True)
    assert (workspace / "ops/b.txt").stat().st_mode & 0o777 == 0o750
    live.cli("sandbox", "file", "rm", sandbox_id, "ops", check=True)
    assert not (workspace / "ops").exists()
    gone = live.cli("sandbox", "file", "rm", sandbox_id, "ops")
    assert gone.returncode == 3  # file_not_found -> NotFoundError


def test_find_search_replace_write_files(live, sandbox_id, workspace):
    files = json.dumps(
        [
            {"path": "grep/a.py", "content": "x = 1\n# TODO one\n"},
            {"path": "grep/b.txt", "content": "TODO two\n"},
        ]
    )
    written = json.loads(
        live.cli("sandbox", "file", "write-files", sandbox_id, files, check=True).stdout
    )
    assert [w["path"] for w in written] == ["/workspace/grep/a.py", "/workspace/grep/b.txt"]
    matches = json.loads(
        live.cli("sandbox", "file", "find", sandbox_id, "grep", "TODO", check=True).stdout
    )
    assert matches == [
        {"file": "/workspace/grep/a.py", "line": 2, "content": "# TODO one"},
        {"file": "/workspace/grep/b.txt", "line": 1, "content": "TODO two"},
    ]
    names = json.loads(
        live.cli("sandbox", "file", "search", sandbox_id, "/workspace", "*.py", check=True).stdout
    )
    assert names == ["/workspace/grep/a.py"]
    replaced = live.cli(
        "sandbox",
        "file",
        "replace",
        sandbox_id,
        "TODO",
        "DONE",
        "grep/a.py",
        "grep/b.txt",
        check=True,
    )
    assert json.loads(replaced.stdout) == {"replacements": 2}
    assert (workspace / "grep/b.txt").read_text() == "DONE two\n"


def test_host_paths_are_the_sandboxs_own(live, sandbox_id, tmp_path):
    """A host path names a file of the sandbox's root (absent there): the host's is never read."""
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    missing = live.cli("sandbox", "file", "read", sandbox_id, str(outside))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert "secret" not in missing.stdout
    live.cli("sandbox", "file", "write", sandbox_id, "../../x.txt", input="inside", check=True)
    inside = live.cli("sandbox", "file", "read", sandbox_id, "/x.txt", check=True)
    assert inside.stdout.rstrip("\n") == "inside"
    assert outside.read_text() == "secret" and not Path("/x.txt").exists()


def test_upload_small_file_direct(live, sandbox_id, workspace, tmp_path):
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(300_000))
    result = json.loads(
        live.cli(
            "sandbox", "upload", sandbox_id, str(source), "up/small.bin", "--json", check=True
        ).stdout
    )
    assert result["transport"] == "direct"
    assert sha256_of(workspace / "up/small.bin") == sha256_of(source)


def test_upload_20_mib_uses_resumable_sessions(live, sandbox_id, workspace, tmp_path):
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(20):
            out.write(os.urandom(1024 * 1024))
    result = json.loads(
        live.cli(
            "sandbox", "upload", sandbox_id, str(source), "up/big.bin", "--json", check=True
        ).stdout
    )
    assert result["transport"] == "resumable"
    assert result["result"]["bytes_uploaded"] == 20 * 1024 * 1024 and result["result"]["upload_id"]
    assert sha256_of(workspace / "up/big.bin") == sha256_of(source)
    staging = live.data_dir / "upload-staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_upload_directory(live, sandbox_id, workspace, tmp_path):
    source = tmp_path / "site"
    (source / "assets").mkdir(parents=True)
    (source / "index.html").write_text("<h1>hi</h1>")
    (source / "assets/app.js").write_text("console.log(1)")
    (source / "skip.log").write_text("noise")
    result = json.loads(
        live.cli(
            "sandbox",
            "upload",
            sandbox_id,
            str(source),
            "site",
            "--exclude",
            "*.log",
            "--json",
            check=True,
        ).stdout
    )
    assert result["result"]["kind"] == "directory_tar" and result["result"]["file_count"] == 2
    assert (workspace / "site/index.html").read_text() == "<h1>hi</h1>"
    assert (workspace / "site/assets/app.js").read_text() == "console.log(1)"
    assert not (workspace / "site/skip.log").exists()
    (source / "index.html").write_text("<h1>v2</h1>")
    live.cli(
        "sandbox",
        "upload",
        sandbox_id,
        str(source),
        "site",
        "--conflict",
        "replace",
        "--json",
        check=True,
    )
    assert (workspace / "site/index.html").read_text() == "<h1>v2</h1>"
    clash = live.cli("sandbox", "upload", sandbox_id, str(source), "site", "--conflict", "error")
    assert clash.returncode == 1 and "exists" in clash.stderr


def test_download_url_and_upload_url(live, sandbox_id, workspace):
    (workspace / "dl.bin").write_bytes(b"\x01\x02download me")
    url = live.cli(
        "sandbox", "file", "download-url", sandbox_id, "dl.bin", check=True
    ).stdout.strip()
    fetched = httpx.get(url.replace("localhost", "127.0.0.1"), timeout=30)
    assert fetched.status_code == 200 and fetched.content == b"\x01\x02download me"
    target = json.loads(
        live.cli("sandbox", "file", "upload-url", sandbox_id, "via-url.txt", check=True).stdout
    )
    assert set(target) <= {"url", "token"}
    put = httpx.put(
        target["url"].replace("localhost", "127.0.0.1"), content=b"put by url", timeout=30
    )
    assert put.status_code == 204
    assert (workspace / "via-url.txt").read_bytes() == b"put by url"


def test_chunked_put_on_the_real_server(live, sandbox_id, workspace):
    """Transfer-Encoding: chunked through daphne; over the limit leaves nothing behind."""
    base = f"http://127.0.0.1:{live.port}/v1/sandboxes/{sandbox_id}/file"
    auth = {"Authorization": f"Bearer {live.api_key}"}
    chunks = [os.urandom(256 * 1024) for _ in range(8)]
    ok = httpx.put(
        base, params={"path": "chunk/ok.bin"}, content=iter(chunks), headers=auth, timeout=60
    )
    assert ok.status_code == 204, ok.text
    assert (workspace / "chunk/ok.bin").read_bytes() == b"".join(chunks)

    def too_much():
        for _ in range(int(live.env["MAX_FILE_BYTES"]) // (1024 * 1024) + 2):
            yield b"z" * (1024 * 1024)

    big = httpx.put(
        base, params={"path": "chunk/big.bin"}, content=too_much(), headers=auth, timeout=120
    )
    assert big.status_code == 413 and big.json()["code"] == "file_too_large"
    assert sorted(p.name for p in (workspace / "chunk").iterdir()) == ["ok.bin"]
