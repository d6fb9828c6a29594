"""The sandbox files API (docs/api.md §2.6) through the Django test client, on a real local sandbox."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from urllib.parse import quote

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from nullspace.types import (
    CompleteUploadResponse,
    FileInfo,
    SearchMatch,
    UploadFailureDetail,
    UploadSessionInfo,
    UploadUrl,
)

from console.actor import Actor
from console.models import UploadSession
from console.sandboxes.api import files as files_api
from console.sandboxes.service import create_sandbox, destroy_sandbox

pytestmark = pytest.mark.django_db

FILEINFO_KEYS = {
    "name", "path", "is_dir", "size", "type", "mode", "permissions", "owner", "group",
    "modified_time", "symlink_target",
}  # fmt: skip


def url(sb, suffix: str) -> str:
    return f"/v1/sandboxes/{sb.public_id}/{suffix}"


def post(api, sb, suffix: str, body: dict):
    return api.post(
        url(sb, suffix), json.dumps({"user": None, **body}), content_type="application/json"
    )


def test_write_read_info_roundtrip(api, sandbox, workspace):
    response = post(
        api,
        sandbox,
        "files/write",
        {"path": "notes/a.txt", "content": "héllo\n", "encoding": "utf8"},
    )
    assert response.status_code == 200, response.content
    info = response.json()
    assert set(info) == FILEINFO_KEYS
    parsed = FileInfo(**info)
    assert (parsed.path, parsed.name, parsed.is_dir, parsed.size) == (
        "/workspace/notes/a.txt",
        "a.txt",
        False,
        7,
    )
    assert (workspace / "notes/a.txt").read_text() == "héllo\n"
    assert (
        post(
            api, sandbox, "files/read", {"path": "/workspace/notes/a.txt", "encoding": "utf8"}
        ).json()["content"]
        == "héllo\n"
    )
    info = post(api, sandbox, "files/info", {"path": "notes"}).json()
    assert FileInfo(**info).is_dir and info["type"] == "dir"


def test_binary_read_is_refused_with_base64_hint_and_raw_get_works(api, sandbox, workspace):
    blob = bytes(range(256)) * 4
    response = post(
        api,
        sandbox,
        "files/write",
        {"path": "b.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"},
    )
    assert response.status_code == 200
    refused = post(api, sandbox, "files/read", {"path": "b.bin", "encoding": "utf8"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_request"
    assert "base64" in refused.json()["error"]
    raw = api.get(url(sandbox, "file"), {"path": "b.bin"})
    assert raw.status_code == 200 and b"".join(raw.streaming_content) == blob
    as_b64 = post(api, sandbox, "files/read", {"path": "b.bin", "encoding": "base64"}).json()
    assert base64.b64decode(as_b64["content"]) == blob


def test_put_file_raw_bytes_with_and_without_content_type(api, sandbox, workspace):
    for content_type in ("application/octet-stream", ""):
        data = os.urandom(70_000)
        response = api.generic(
            "PUT", url(sandbox, "file") + "?path=up/raw.bin", data, content_type=content_type
        )
        assert response.status_code == 204, response.content
        assert (workspace / "up/raw.bin").read_bytes() == data


def test_size_limit_refuses_and_leaves_nothing_behind(api, sandbox, workspace, settings):
    settings.MAX_FILE_BYTES = 4096
    (workspace / "keep").mkdir()
    (workspace / "keep/big.bin").write_bytes(b"old")
    for target in ("keep/big.bin", "keep/new.bin"):
        response = api.generic(
            "PUT", url(sandbox, "file") + f"?path={target}", b"x" * 5000, content_type=""
        )
        assert response.status_code == 413 and response.json()["code"] == "file_too_large"
    write = post(api, sandbox, "files/write", {"path": "keep/w.txt", "content": "y" * 5000})
    assert write.json()["code"] == "file_too_large"
    assert sorted(p.name for p in (workspace / "keep").iterdir()) == ["big.bin"]
    assert (workspace / "keep/big.bin").read_bytes() == b"old"


def test_list_exists_mkdir_rename_remove_permissions(api, sandbox, workspace):
    assert api_ok(post(api, sandbox, "files/mkdir", {"path": "d/e/f"})).status_code == 204
    (workspace / "d/top.txt").write_text("t")
    (workspace / "d/e/deep.txt").write_text("deep")
    shallow = api.get(url(sandbox, "files"), {"path": "/workspace/d"}).json()
    assert sorted(e["name"] for e in shallow) == ["e", "top.txt"]
    assert all(set(e) == FILEINFO_KEYS for e in shallow)
    deep = api.get(url(sandbox, "files"), {"path": "d", "depth": 3}).json()
    assert "/workspace/d/e/deep.txt" in {e["path"] for e in deep}
    root = api.get(url(sandbox, "files"), {"path": "/"}).json()  # the sandbox's own root
    assert {"/workspace", "/etc", "/home"} <= {e["path"] for e in root}
    assert post(api, sandbox, "files/exists", {"path": "d/top.txt"}).json() == {"exists": True}
    assert post(api, sandbox, "files/exists", {"path": "d/nope"}).json() == {"exists": False}
    moved = post(
        api, sandbox, "files/rename", {"old_path": "d/top.txt", "new_path": "d/e/moved.txt"}
    )
    assert FileInfo(**moved.json()).path == "/workspace/d/e/moved.txt"
    assert (
        not (workspace / "d/top.txt").exists() and (workspace / "d/e/moved.txt").read_text() == "t"
    )
    assert (
        post(
            api, sandbox, "files/permissions", {"path": "d/e/moved.txt", "permissions": "0600"}
        ).status_code
        == 204
    )
    assert (workspace / "d/e/moved.txt").stat().st_mode & 0o777 == 0o600
    assert post(api, sandbox, "files/info", {"path": "d/e/moved.txt"}).json()["mode"] == "0600"
    bad = post(api, sandbox, "files/permissions", {"path": "d/e/moved.txt", "permissions": "rwx"})
    assert bad.json()["code"] == "invalid_request"
    assert post(api, sandbox, "files/remove", {"path": "d"}).status_code == 204
    assert not (workspace / "d").exists()
    missing = post(api, sandbox, "files/remove", {"path": "d"})
    assert missing.status_code == 404 and missing.json()["code"] == "file_not_found"
    assert (
        post(api, sandbox, "files/remove", {"path": "/workspace"}).json()["code"]
        == "invalid_request"
    )


def api_ok(response):
    assert response.status_code < 400, response.content
    return response


def test_find_search_replace(api, sandbox, workspace):
    (workspace / "src/pkg").mkdir(parents=True)
    (workspace / "src/app.py").write_text("import os\nTODO = 1\n")
    (workspace / "src/pkg/mod.py").write_text("x = 2  # TODO fix\n")
    (workspace / "src/pkg/data.bin").write_bytes(b"TODO\x00binary")
    matches = post(api, sandbox, "files/find", {"path": "src", "pattern": "TODO"}).json()
    assert [SearchMatch(**m) for m in matches] == [
        SearchMatch(file="/workspace/src/app.py", line=2, content="TODO = 1"),
        SearchMatch(file="/workspace/src/pkg/mod.py", line=1, content="x = 2  # TODO fix"),
    ]
    assert all(set(m) == {"file", "line", "content"} for m in matches)
    found = post(api, sandbox, "files/search", {"path": "/workspace", "pattern": "*.py"}).json()
    assert found == ["/workspace/src/app.py", "/workspace/src/pkg/mod.py"]
    result = post(
        api, sandbox, "files/replace",
        {"files": ["src/app.py", "/workspace/src/pkg/mod.py"], "pattern": "TODO", "replacement": "DONE"},
    ).json()  # fmt: skip
    assert result["replacements"] == 2
    assert (workspace / "src/app.py").read_text() == "import os\nDONE = 1\n"


def test_batch_write_reports_each_file(api, sandbox, workspace):
    manifest = {
        "files": [
            {"path": "batch/one.txt", "field": "file0"},
            {"path": "batch/one.txt/under-a-file", "field": "file1"},
        ]
    }
    response = api.post(
        url(sandbox, "files/batch-write"),
        {
            "manifest": SimpleUploadedFile(
                "manifest.json", json.dumps(manifest).encode(), "application/json"
            ),
            "file0": SimpleUploadedFile("file0.bin", b"first", "application/octet-stream"),
            "file1": SimpleUploadedFile("file1.bin", b"second", "application/octet-stream"),
        },
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert results[0]["status"] == "success" and FileInfo(**results[0]["info"]).size == 5
    assert results[1]["status"] == "error" and results[1]["path"] == "batch/one.txt/under-a-file"
    assert (workspace / "batch/one.txt").read_bytes() == b"first"


@pytest.mark.parametrize(
    "manifest", ["not json", "{}", '{"files": "x"}', '{"files": [1]}', '{"files": [{}, "x"]}']
)
def test_batch_write_refuses_a_bad_manifest(api, sandbox, workspace, manifest):
    response = api.post(
        url(sandbox, "files/batch-write"),
        {"manifest": manifest, "file0": SimpleUploadedFile("file0.bin", b"x")},
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request" and "manifest" in response.json()["error"]
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize(
    "bad",
    [
        "../outside.txt",
        "/etc/passwd",
        "/workspace/../etc/x",
        "a/../../x",
        "link/owned.txt",
        "filelink",
    ],
)
def test_paths_never_leave_the_sandbox(api, sandbox, workspace, tmp_path, bad):
    """Every path is the sandbox's own: `..`, absolute paths and symlinks to host paths
    resolve inside its root, so the host's files are never read nor written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (workspace / "link").symlink_to(outside)
    (workspace / "filelink").symlink_to(outside / "secret.txt")
    host_passwd = open("/etc/passwd", "rb").read()
    for route, body in (
        ("files/write", {"path": bad, "content": "pwned"}),
        ("files/read", {"path": bad}),
        ("files/mkdir", {"path": bad}),
        ("files/info", {"path": bad}),
    ):
        response = post(api, sandbox, route, body)
        assert response.status_code < 500, (route, response.content)
        if route == "files/read" and response.status_code == 200:
            assert response.json()["content"] in ("pwned", ""), response.json()
    api.generic("PUT", url(sandbox, "file") + f"?path={bad}", b"pwned", content_type="")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert open("/etc/passwd", "rb").read() == host_passwd
    sandbox_passwd = post(api, sandbox, "files/read", {"path": "/etc/hostname"}).json()
    assert sandbox_passwd["content"].strip() == sandbox.public_id.replace("_", "-").lower()


def test_another_projects_sandbox_is_not_found(client, sandbox, other_api_key):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {other_api_key[0]}"
    routes = [("post", f"files/{name}") for name in (
        "read", "write", "info", "exists", "mkdir", "remove", "rename", "permissions", "find", "search",
        "replace", "download-url", "upload-url",
    )] + [("get", "file?path=a"), ("put", "file?path=a"), ("get", "files?path=/"), ("post", "uploads"),
          ("get", "uploads/upl_x"), ("delete", "uploads/upl_x"), ("put", "uploads/upl_x/parts/0"),
          ("post", "uploads/upl_x/complete"), ("post", "files/batch-write")]  # fmt: skip
    for method, suffix in routes:
        if method == "get":
            response = client.get(url(sandbox, suffix))
        else:
            response = client.generic(
                method.upper(), url(sandbox, suffix), "{}", content_type="application/json"
            )
        assert response.status_code == 404, (method, suffix)
        assert response.json()["code"] == "sandbox_not_found"


def test_destroyed_sandbox_is_not_found_and_paused_files_still_work(api, project, api_key, runtime):
    from console.sandboxes.service import pause_sandbox

    sb, _ = create_sandbox(project, actor=Actor.key(api_key[1]))
    pause_sandbox(sb, actor=Actor())
    sb.refresh_from_db()
    assert sb.status == "paused"
    assert (
        post(api, sb, "files/write", {"path": "p.txt", "content": "still here"}).status_code == 200
    )
    assert post(api, sb, "files/read", {"path": "p.txt"}).json()["content"] == "still here"
    destroy_sandbox(sb, actor=Actor())
    assert post(api, sb, "files/read", {"path": "p.txt"}).json()["code"] == "sandbox_not_found"


def test_download_url_is_self_authenticating_and_expires(api, sandbox, workspace, monkeypatch):
    (workspace / "dl/sub").mkdir(parents=True)
    (workspace / "dl/a.txt").write_text("A")
    (workspace / "dl/sub/b.txt").write_text("B")
    body = post(api, sandbox, "files/download-url", {"path": "dl/a.txt"}).json()
    assert set(body) == {"url"} and body["url"].startswith("http://testserver/v1/")
    anonymous = Client()
    got = anonymous.get(body["url"])
    assert got.status_code == 200 and b"".join(got.streaming_content) == b"A"
    assert anonymous.get(body["url"].replace("token=", "token=x")).json()["code"] == "unauthorized"
    folder = post(api, sandbox, "files/download-url", {"path": "dl"}).json()
    assert folder["code"] == "invalid_request" and "archive_format" in folder["error"]
    tar_url = post(
        api, sandbox, "files/download-url", {"path": "dl", "archive_format": "tar"}
    ).json()["url"]
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(anonymous.get(tar_url).streaming_content)))
    assert sorted(archive.getnames()) == ["a.txt", "sub", "sub/b.txt"]
    assert archive.extractfile("sub/b.txt").read() == b"B"
    monkeypatch.setattr(files_api, "SIGNED_URL_TTL_SECONDS", -1)
    assert anonymous.get(body["url"]).json()["code"] == "unauthorized"


def test_upload_url_accepts_a_put_without_auth(api, sandbox, workspace):
    body = post(api, sandbox, "files/upload-url", {"path": "via-url/file.bin"}).json()
    assert UploadUrl(**body).url.startswith("http://testserver/")
    response = Client().generic("PUT", body["url"], b"\x00payload", content_type="")
    assert response.status_code == 204, response.content
    assert (workspace / "via-url/file.bin").read_bytes() == b"\x00payload"
    download_token = post(api, sandbox, "files/download-url", {"path": "via-url/file.bin"}).json()[
        "url"
    ]
    wrong_purpose = body["url"].replace("signed-upload", "signed-download")
    assert Client().get(wrong_purpose).json()["code"] == "unauthorized"
    assert (
        Client()
        .generic("PUT", download_token.replace("signed-download", "signed-upload"), b"x")
        .status_code
        == 401
    )


def test_upload_url_accepts_a_form_post(api, sandbox, workspace):
    """The client's direct upload posts the file as multipart to the same signed URL."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    body = post(api, sandbox, "files/upload-url", {"path": "via-form/up.txt"}).json()
    assert UploadUrl(**body).token and quote(body["token"], safe="") in body["url"]
    sent = Client().post(body["url"], {"file": SimpleUploadedFile("up.txt", b"form-ok")})
    assert sent.status_code == 204, sent.content
    assert (workspace / "via-form/up.txt").read_bytes() == b"form-ok"
    two = Client().post(
        body["url"],
        {"a": SimpleUploadedFile("a", b"1"), "b": SimpleUploadedFile("b", b"2")},
    )
    assert two.status_code == 400 and "exactly one file part" in two.json()["error"]
    plain = Client().post(body["url"], b"raw", content_type="application/octet-stream")
    assert plain.status_code == 400 and plain.json()["code"] == "invalid_request"


def test_chunked_put_through_asgi(sandbox, workspace, api_key):
    """Transfer-Encoding: chunked (no Content-Length), as `sandbox upload` sends it."""
    from console.asgi import application

    payload = [os.urandom(100_000) for _ in range(12)]

    async def run():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:

            async def body():
                for chunk in payload:
                    yield chunk

            return await http.put(
                f"/v1/sandboxes/{sandbox.public_id}/file",
                params={"path": "chunked.bin"},
                content=body(),
                headers={"Authorization": f"Bearer {api_key[0]}"},
            )

    # As Django's test client does: keep the test's database connection open across the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = async_to_sync(run)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert response.status_code == 204, response.text
    assert (workspace / "chunked.bin").read_bytes() == b"".join(payload)


# --- upload sessions ----------------------------------------------------------------------


def create_session(api, sb, *, length: int, target: str, kind="file", key="k1", **extra):
    body = {
        "kind": kind, "source_kind": "directory_archive" if kind == "directory_tar" else "restartable_file",
        "target_path": target, "content_length": length, "conflict": extra.pop("conflict", "merge"),
        "archive_format": "tar" if kind == "directory_tar" else None, "checksum_algorithm": "sha256",
        "whole_checksum_sha256": None, "metadata": {}, **extra,
    }  # fmt: skip
    return api.post(
        url(sb, "uploads"),
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def put_part(api, sb, upload_id, number, data, sha=None):
    return api.generic(
        "PUT", url(sb, f"uploads/{upload_id}/parts/{number}"), data, content_type="application/octet-stream",
        HTTP_X_NULLSPACE_PART_SHA256=sha or hashlib.sha256(data).hexdigest(),
    )  # fmt: skip


def complete(api, sb, upload_id, digest, key="c1"):
    return api.post(
        url(sb, f"uploads/{upload_id}/complete"), json.dumps({"whole_checksum_sha256": digest}),
        content_type="application/json", HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip


def upload_failure(response) -> UploadFailureDetail:
    body = response.json()
    assert body["code"] == "file_upload_error", body
    return UploadFailureDetail(**body["error_detail"])


def test_resumable_file_upload_with_checksums(api, sandbox, workspace, settings):
    from console.sandboxes import uploads

    data = os.urandom(uploads.PART_SIZE * 2 + 1234)
    created = create_session(api, sandbox, length=len(data), target="big/data.bin")
    assert created.status_code == 201, created.content
    session = UploadSessionInfo(**created.json()["session"])
    assert (session.part_count, session.status.value, session.next_part) == (3, "created", 0)
    assert session.limits.max_upload_bytes == settings.MAX_FILE_BYTES
    again = create_session(api, sandbox, length=len(data), target="big/data.bin")
    assert again.json()["session"]["upload_id"] == session.upload_id  # same Idempotency-Key
    assert UploadSession.objects.count() == 1
    parts = [data[i : i + session.part_size] for i in range(0, len(data), session.part_size)]

    bad = upload_failure(put_part(api, sandbox, session.upload_id, 0, parts[0], sha="0" * 64))
    assert (bad.reason.value, bad.part_number, bad.upload_id) == (
        "invalid_part_checksum",
        0,
        session.upload_id,
    )
    assert (
        upload_failure(put_part(api, sandbox, session.upload_id, 3, b"x")).reason.value
        == "part_out_of_range"
    )
    assert (
        upload_failure(put_part(api, sandbox, session.upload_id, 2, b"short")).reason.value
        == "part_size_mismatch"
    )

    state = UploadSessionInfo(**put_part(api, sandbox, session.upload_id, 2, parts[2]).json())
    assert (state.status.value, state.next_part, state.accepted_bytes) == (
        "uploading",
        0,
        len(parts[2]),
    )
    missing = upload_failure(
        complete(api, sandbox, session.upload_id, hashlib.sha256(data).hexdigest())
    )
    assert missing.reason.value == "missing_parts" and missing.details["missing_parts"] == [0, 1]
    for number in (0, 1):
        api_ok(put_part(api, sandbox, session.upload_id, number, parts[number]))
    staged = api.get(url(sandbox, f"uploads/{session.upload_id}")).json()
    assert UploadSessionInfo(**staged).status.value == "staged" and staged["next_part"] is None
    assert not (workspace / "big").exists()  # nothing published before complete

    done = complete(api, sandbox, session.upload_id, hashlib.sha256(data).hexdigest())
    assert done.status_code == 200, done.content
    result = CompleteUploadResponse(**done.json())
    assert (result.published_bytes, result.published_file_count, result.session.status.value) == (
        len(data), 1, "completed",
    )  # fmt: skip
    assert (
        hashlib.sha256((workspace / "big/data.bin").read_bytes()).digest()
        == hashlib.sha256(data).digest()
    )
    assert (
        complete(api, sandbox, session.upload_id, hashlib.sha256(data).hexdigest()).json()
        == done.json()
    )
    late = upload_failure(put_part(api, sandbox, session.upload_id, 0, parts[0]))
    assert late.reason.value == "upload_already_completed"
    assert not (settings.DATA_DIR / "upload-staging" / session.upload_id).exists()


def test_whole_checksum_mismatch_publishes_nothing(api, sandbox, workspace, settings):
    data = b"hello world"
    session = create_session(api, sandbox, length=len(data), target="w.txt").json()["session"]
    api_ok(put_part(api, sandbox, session["upload_id"], 0, data))
    failure = upload_failure(
        complete(api, sandbox, session["upload_id"], hashlib.sha256(b"other").hexdigest())
    )
    assert failure.reason.value == "whole_checksum_mismatch"
    assert not (workspace / "w.txt").exists()
    assert [p.name for p in workspace.iterdir()] == []
    status = api.get(url(sandbox, f"uploads/{session['upload_id']}")).json()["status"]
    assert status == "failed"


def test_upload_limits_and_abort(api, sandbox, workspace, settings):
    settings.MAX_FILE_BYTES = 10_000
    too_big = upload_failure(create_session(api, sandbox, length=20_000, target="x.bin"))
    assert too_big.reason.value == "size_limit_exceeded"
    (workspace / "exists.txt").write_text("x")
    conflict = upload_failure(
        create_session(api, sandbox, length=1, target="exists.txt", conflict="error", key="k2")
    )
    assert conflict.reason.value == "target_conflict"
    (workspace / "adir").mkdir()
    assert (
        upload_failure(create_session(api, sandbox, length=1, target="adir", key="k5")).reason.value
        == "target_conflict"
    )
    root = create_session(
        api, sandbox, length=512, target="/", kind="directory_tar", conflict="replace", key="k6"
    )
    assert root.json()["code"] == "invalid_request" and "replace" in root.json()["error"]
    escape = create_session(api, sandbox, length=1, target="bad\x00name", key="k3")
    assert escape.json()["code"] == "invalid_request"
    session = create_session(api, sandbox, length=4, target="abort.txt", key="k4").json()["session"]
    api_ok(put_part(api, sandbox, session["upload_id"], 0, b"abcd"))
    assert api.delete(url(sandbox, f"uploads/{session['upload_id']}")).status_code == 204
    assert api.get(url(sandbox, f"uploads/{session['upload_id']}")).json()["status"] == "aborted"
    assert (
        upload_failure(complete(api, sandbox, session["upload_id"], None)).reason.value
        == "upload_aborted"
    )
    assert api.get(url(sandbox, "uploads/upl_missing")).json()["code"] == "upload_not_found"


def make_tar(entries) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                if kind == tarfile.SYMTYPE:
                    info.linkname = payload
                tar.addfile(info)
    return buffer.getvalue()


def upload_tar(api, sb, data: bytes, target: str, conflict: str, key: str):
    session = create_session(
        api, sb, length=len(data), target=target, kind="directory_tar", conflict=conflict, key=key
    ).json()["session"]
    api_ok(put_part(api, sb, session["upload_id"], 0, data))
    return complete(api, sb, session["upload_id"], hashlib.sha256(data).hexdigest(), key=key)


def test_directory_upload_merge_replace_error(api, sandbox, workspace):
    tree = make_tar([
        ("src", tarfile.DIRTYPE, None), ("src/a.txt", tarfile.REGTYPE, b"A"),
        ("src/lib", tarfile.DIRTYPE, None), ("src/lib/b.txt", tarfile.REGTYPE, b"B"),
        ("src/link", tarfile.SYMTYPE, "lib/b.txt"),
    ])  # fmt: skip
    done = upload_tar(api, sandbox, tree, "proj", "merge", "t1")
    assert done.status_code == 200, done.content
    assert CompleteUploadResponse(**done.json()).published_file_count == 2
    assert (workspace / "proj/src/lib/b.txt").read_text() == "B"
    assert os.readlink(workspace / "proj/src/link") == "lib/b.txt"
    (workspace / "proj/src/extra.txt").write_text("mine")
    api_ok(
        upload_tar(
            api, sandbox, make_tar([("src/a.txt", tarfile.REGTYPE, b"A2")]), "proj", "merge", "t2"
        )
    )
    assert (workspace / "proj/src/a.txt").read_text() == "A2" and (
        workspace / "proj/src/extra.txt"
    ).exists()
    api_ok(
        upload_tar(
            api, sandbox, make_tar([("only.txt", tarfile.REGTYPE, b"O")]), "proj", "replace", "t3"
        )
    )
    assert sorted(p.name for p in (workspace / "proj").iterdir()) == ["only.txt"]
    refused = create_session(
        api, sandbox, length=512, target="proj", kind="directory_tar", conflict="error", key="t4"
    )
    assert upload_failure(refused).reason.value == "target_conflict"
    assert sorted(p.name for p in workspace.iterdir()) == ["proj"]  # no staging left beside it
    api_ok(
        upload_tar(
            api,
            sandbox,
            make_tar([("top.txt", tarfile.REGTYPE, b"T")]),
            "/workspace",
            "merge",
            "t5",
        )
    )
    assert sorted(p.name for p in workspace.iterdir()) == ["proj", "top.txt"]
    assert sorted(p.name for p in workspace.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("../evil.txt", tarfile.REGTYPE, b"x")], "directory_extract_invalid_path"),
        ([("/abs.txt", tarfile.REGTYPE, b"x")], "directory_extract_invalid_path"),
        ([("ln", tarfile.SYMTYPE, "/etc")], "directory_extract_invalid_symlink"),
        ([("ln", tarfile.SYMTYPE, "../../..")], "directory_extract_invalid_symlink"),
        ([("d", tarfile.DIRTYPE, None), ("d/ln", tarfile.SYMTYPE, ".."), ("d/ln/x", tarfile.REGTYPE, b"x")],
         "directory_extract_invalid_symlink"),
        ([("dev", tarfile.CHRTYPE, None)], "directory_extract_unsupported_entry"),
        ([("fifo", tarfile.FIFOTYPE, None)], "directory_extract_unsupported_entry"),
        ([("a", tarfile.REGTYPE, b"a"), ("hard", tarfile.LNKTYPE, None)], "directory_extract_unsupported_entry"),
    ],
)  # fmt: skip
def test_directory_upload_refuses_unsafe_archives(api, sandbox, workspace, entries, reason):
    failure = upload_failure(upload_tar(api, sandbox, make_tar(entries), "unsafe", "merge", "u1"))
    assert failure.reason.value == reason
    assert list(workspace.iterdir()) == []
    assert not (workspace.parent / "evil.txt").exists()


def test_expired_sessions_are_swept(api, sandbox, settings):
    from datetime import timedelta

    from django.utils import timezone

    from console.sandboxes import uploads

    session = create_session(api, sandbox, length=4, target="late.txt", key="e1").json()["session"]
    api_ok(put_part(api, sandbox, session["upload_id"], 0, b"late"))
    staging = settings.DATA_DIR / "upload-staging" / session["upload_id"]
    assert staging.is_dir()
    UploadSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.get(url(sandbox, f"uploads/{session['upload_id']}")).json()["status"] == "expired"
    assert uploads.expire_stale() == 1
    assert not staging.exists()
    late = upload_failure(put_part(api, sandbox, session["upload_id"], 0, b"late"))
    assert late.reason.value == "upload_expired"


def test_read_only_key_reads_but_cannot_write(client, sandbox, read_key, workspace):
    (workspace / "r.txt").write_text("readable")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {read_key[0]}"
    assert post(client, sandbox, "files/read", {"path": "r.txt"}).json()["content"] == "readable"
    assert post(client, sandbox, "files/find", {"path": "/", "pattern": "read"}).status_code == 200
    for route, body in (
        ("files/write", {"path": "w.txt", "content": "x"}),
        ("files/remove", {"path": "r.txt"}),
    ):
        assert post(client, sandbox, route, body).json()["code"] == "permission_denied"
    put = client.generic("PUT", url(sandbox, "file") + "?path=w.txt", b"x", content_type="")
    assert put.json()["code"] == "permission_denied"
    assert sorted(p.name for p in workspace.iterdir()) == ["r.txt"]
