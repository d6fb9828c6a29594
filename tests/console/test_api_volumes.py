"""/v1/volumes through the Django test client, on real volume stores (an ext4 image per
volume, and the plain-directory store): shapes, isolation between projects, paths that
try to leave the volume, quotas, and deletion of a mounted volume."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from django.utils import timezone
from nullspace.types import FileInfo, VolumeReplaceResult, VolumeUploadSessionInfo

from console.actor import Actor
from console.errors import DomainError
from console.models import Volume
from console.runtime.isolated import IsolatedDriver
from console.sandboxes import files as sandbox_files
from console.volumes import service as volumes
from console.volumes.store import get_store, images_work

pytestmark = pytest.mark.django_db

SMALL = 16 * 1024 * 1024


@pytest.fixture(params=["image", "directory"])
def store(request, settings, tmp_path):
    """Volumes of this test under its own root, in one store or the other; all removed after."""
    if request.param == "image" and not images_work():
        pytest.skip("the image store needs root and loop devices")
    settings.VOLUMES_ROOT = tmp_path / "volumes"
    settings.VOLUMES_BACKEND = request.param
    settings.VOLUME_MAX_BYTES = SMALL
    settings.DATA_DIR = tmp_path
    made = get_store()
    yield made
    made.destroy_all()


def post(api, volume_id: str, suffix: str, body: dict):
    return api.post(
        f"/v1/volumes/{volume_id}/{suffix}", json.dumps(body), content_type="application/json"
    )


@pytest.fixture
def volume(api, store):
    response = api.post("/v1/volumes", json.dumps({"name": "team-data"}), "application/json")
    assert response.status_code == 201, response.content
    return response.json()


def host_root(volume_id: str) -> Path:
    return Path(volumes.files(Volume.objects.get(public_id=volume_id)).root)


def test_create_get_list_and_fields(api, volume):
    assert volume["name"] == "team-data" and volume["id"].startswith("vol_")
    assert (volume["used_bytes"], volume["inode_count"], volume["mount_count"]) == (0, 0, 0)
    assert volume["status"] == "available" and 0 < volume["max_size_bytes"] <= SMALL
    by_id = api.get(f"/v1/volumes/{volume['id']}").json()
    by_name = api.get("/v1/volumes/by-name/team-data").json()
    assert by_id == by_name
    listed = api.get("/v1/volumes?fields=id,name").json()
    assert listed == [{"id": volume["id"], "name": "team-data"}]
    bad = api.get("/v1/volumes?fields=id,nope").json()
    assert bad["code"] == "invalid_fields"


def test_used_bytes_and_inodes_are_true(api, volume):
    post(api, volume["id"], "files/write", {"path": "/d/a.bin", "content": "x" * 100_000})
    info = api.get(f"/v1/volumes/{volume['id']}").json()
    assert info["inode_count"] == 2  # the directory and the file
    assert 100_000 <= info["used_bytes"] < 200_000


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 64, "é", None, 5])
def test_bad_names_are_refused(api, store, name):
    response = api.post("/v1/volumes", json.dumps({"name": name}), "application/json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"
    assert not Volume.objects.exists()


def test_duplicate_name_is_a_conflict(api, volume):
    response = api.post("/v1/volumes", json.dumps({"name": "team-data"}), "application/json")
    assert response.status_code == 409 and response.json()["code"] == "volume_conflict"


def test_misses_answer_exactly_not_found(api, store):
    # The client falls back between id and name lookups only on code == "not_found".
    assert api.get("/v1/volumes/vol_nope").json()["code"] == "not_found"
    assert api.get("/v1/volumes/by-name/nope").json()["code"] == "not_found"


VOLUME_ROUTES = [
    ("get", ""),
    ("delete", ""),
    ("get", "/attachments"),
    ("get", "/files?path=/"),
    ("get", "/file?path=/a.txt"),
    ("put", "/file?path=/a.txt"),
    ("post", "/files/read"),
    ("post", "/files/write"),
    ("post", "/files/info"),
    ("post", "/files/exists"),
    ("post", "/files/mkdir"),
    ("post", "/files/remove"),
    ("post", "/files/rename"),
    ("post", "/files/permissions"),
    ("post", "/files/find"),
    ("post", "/files/search"),
    ("post", "/files/replace"),
    ("post", "/files/download-url"),
    ("post", "/files/upload-url"),
    ("post", "/uploads"),
    ("get", "/uploads/upl_x"),
    ("delete", "/uploads/upl_x"),
    ("put", "/uploads/upl_x/parts/0"),
    ("post", "/uploads/upl_x/complete"),
]


@pytest.mark.parametrize("method,suffix", VOLUME_ROUTES)
def test_another_projects_volume_is_not_found_everywhere(api, other_project, store, method, suffix):
    theirs = volumes.create_volume(other_project, "theirs", actor=Actor())
    sandbox_files.write_chunks(volumes.files(theirs), "/a.txt", [b"s"])
    response = api.generic(
        method.upper(),
        f"/v1/volumes/{theirs.public_id}{suffix}",
        json.dumps({"path": "/a.txt", "content": "x", "name": "x"}),
        content_type="application/json",
    )
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"
    assert (host_root(theirs.public_id) / "a.txt").read_text() == "s"
    assert Volume.objects.filter(pk=theirs.pk).exists()


def test_signed_url_of_one_volume_does_not_open_another(api, store, volume):
    post(api, volume["id"], "files/write", {"path": "/a.txt", "content": "mine"})
    url = post(api, volume["id"], "files/download-url", {"path": "/a.txt"}).json()["url"]
    other = api.post("/v1/volumes", json.dumps({"name": "other"}), "application/json").json()
    response = api.get(url.replace(volume["id"], other["id"]))
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


@pytest.mark.parametrize("climb", ["../x", "/../../x", "/a/../../x", "../../../../../../x"])
def test_dotdot_stays_inside_the_volume(api, volume, tmp_path, climb):
    # `..` resolves inside the volume as inside a root directory: it can never climb out.
    response = post(api, volume["id"], "files/write", {"path": climb, "content": "x"})
    assert response.status_code == 200 and response.json()["path"] == "/x"
    assert (host_root(volume["id"]) / "x").read_text() == "x"
    assert not (host_root(volume["id"]).parent / "x").exists()


def test_nul_paths_are_refused(api, volume):
    for suffix, body in [
        ("files/write", {"path": "a\x00b", "content": "x"}),
        ("files/read", {"path": "a\x00b"}),
        ("files/mkdir", {"path": "a\x00b"}),
    ]:
        response = post(api, volume["id"], suffix, body)
        assert response.status_code == 400, (suffix, response.content)
    assert sorted(os.listdir(host_root(volume["id"]))) == []


def test_symlinks_never_lead_out_of_the_volume(api, volume, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    root = host_root(volume["id"])
    os.symlink(str(outside), root / "escape")  # as a sandbox with the volume mounted could
    os.symlink("../../../../../../../../" + str(outside).lstrip("/"), root / "relative")
    for link in ("/escape", "/relative"):
        # Links resolve inside the volume (as if it were the root): never to the host.
        read = post(api, volume["id"], "files/read", {"path": f"{link}/secret.txt"})
        assert read.status_code in (400, 404) and b"host secret" not in read.content
        found = post(api, volume["id"], "files/find", {"path": "/", "pattern": "secret"})
        assert b"host secret" not in found.content
        post(api, volume["id"], "files/write", {"path": f"{link}/new.txt", "content": "x"})
        post(api, volume["id"], "files/mkdir", {"path": f"{link}/d"})
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    # The link itself can be described and removed (not followed).
    info = post(api, volume["id"], "files/info", {"path": "/escape"}).json()
    assert info["type"] == "symlink"
    assert post(api, volume["id"], "files/remove", {"path": "/escape"}).status_code == 204
    assert (outside / "secret.txt").exists()


def test_write_over_quota_leaves_nothing(api, volume):
    root = host_root(volume["id"])
    left = volume["max_size_bytes"]
    first = post(
        api, volume["id"], "files/write", {"path": "/half.bin", "content": "h" * (left // 2)}
    )
    assert first.status_code == 200
    too_big = "x" * (left // 2 + 1_000_000)
    response = post(api, volume["id"], "files/write", {"path": "/big.bin", "content": too_big})
    assert response.status_code == 507, response.content
    assert response.json()["code"] == "volume_quota_exceeded"
    assert sorted(os.listdir(root)) == ["half.bin"]  # no partial file, no temporary
    # A raw PUT of a declared length that cannot fit is refused before any byte is read.
    put = api.put(
        f"/v1/volumes/{volume['id']}/file?path=/put.bin",
        b"p" * (left // 2 + 1_000_000),
        content_type="application/octet-stream",
    )
    assert put.json()["code"] == "volume_quota_exceeded"
    session = post(
        api,
        volume["id"],
        "uploads",
        {
            "kind": "file",
            "source_kind": "restartable_file",
            "target_path": "/up.bin",
            "content_length": left,
            "conflict": "merge",
            "archive_format": None,
            "checksum_algorithm": "sha256",
            "whole_checksum_sha256": None,
            "metadata": {},
        },
    )
    assert session.json()["code"] == "volume_quota_exceeded"
    assert sorted(os.listdir(root)) == ["half.bin"]


def test_replace_dry_run_and_strict_shape(api, volume):
    post(api, volume["id"], "files/write", {"path": "/c.txt", "content": "old old"})
    post(
        api,
        volume["id"],
        "files/write",
        {"path": "/b.bin", "content": "AAEC", "encoding": "base64"},
    )
    body = {"files": ["/c.txt", "/b.bin"], "pattern": "old", "replacement": "new"}
    dry = post(api, volume["id"], "files/replace", {**body, "dry_run": True}).json()
    assert VolumeReplaceResult(**dry) == VolumeReplaceResult(
        dry_run=True, replacements=2, files_modified=1, files_skipped=0, binary_files_skipped=1
    )
    assert (host_root(volume["id"]) / "c.txt").read_text() == "old old"
    done = post(api, volume["id"], "files/replace", {**body, "dry_run": False}).json()
    assert done["replacements"] == 2 and not done["dry_run"]
    assert (host_root(volume["id"]) / "c.txt").read_text() == "new new"


def test_upload_session_is_the_volume_shape(api, volume):
    created = post(
        api,
        volume["id"],
        "uploads",
        {
            "kind": "file",
            "source_kind": "restartable_file",
            "target_path": "/u.bin",
            "content_length": 3,
            "conflict": "merge",
            "archive_format": None,
            "checksum_algorithm": "sha256",
            "whole_checksum_sha256": None,
            "metadata": {},
        },
    )
    assert created.status_code == 201, created.content
    session = created.json()["session"]
    info = VolumeUploadSessionInfo(**session)  # STRICT: no `user`, volume limits
    assert "user" not in session and "staging_quota_bytes" in session["limits"]
    assert info.target_path == "/u.bin"


def test_list_and_info_use_volume_paths(api, volume):
    post(api, volume["id"], "files/write", {"path": "d/e.txt", "content": "e"})
    listed = api.get(f"/v1/volumes/{volume['id']}/files?path=/&depth=2").json()
    assert [FileInfo(**e).path for e in listed] == ["/d", "/d/e.txt"]
    assert post(api, volume["id"], "files/exists", {"path": "/d/e.txt"}).json() == {"exists": True}


def test_read_only_key_cannot_write(client, read_key, volume):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {read_key[0]}"
    response = post(client, volume["id"], "files/write", {"path": "/x", "content": "x"})
    assert response.status_code == 403
    assert client.delete(f"/v1/volumes/{volume['id']}").status_code == 403
    assert client.get(f"/v1/volumes/{volume['id']}").status_code == 200


def test_delete_removes_the_storage(api, volume, store, django_capture_on_commit_callbacks):
    root = host_root(volume["id"])
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/v1/volumes/{volume['id']}").status_code == 204
    assert not root.exists()
    assert not list(store.root.rglob(f"{volume['id']}*"))  # no image, mount point or lock left
    assert api.get(f"/v1/volumes/{volume['id']}").json()["code"] == "not_found"


def test_deleting_the_project_removes_its_volumes_storage(
    api, project, volume, store, django_capture_on_commit_callbacks
):
    root = host_root(volume["id"])
    with django_capture_on_commit_callbacks(execute=True):
        project.delete()
    assert not root.exists() and not list(store.root.rglob(f"{volume['id']}*"))


def test_volume_count_is_limited(api, store, settings):
    settings.MAX_VOLUMES_PER_PROJECT = 1
    assert api.post("/v1/volumes", json.dumps({"name": "a"}), "application/json").status_code == 201
    response = api.post("/v1/volumes", json.dumps({"name": "b"}), "application/json")
    assert response.json()["code"] == "volume_limit_exceeded"


def test_mount_specs_are_checked(api, store, project, other_project, volume):
    theirs = volumes.create_volume(other_project, "theirs", actor=Actor())
    ok = {"ref": "team-data", "mount_path": "/data", "read_only": True}
    assert volumes.parse_mounts(project, [ok])[0]["mount_path"] == "/data"
    refusals = [
        ({**ok, "ref": theirs.public_id}, "not_found"),
        ({**ok, "ref": "theirs"}, "not_found"),
        ({**ok, "mount_path": "data"}, "invalid_request"),
        ({**ok, "mount_path": "/etc/x"}, "invalid_request"),
        ({**ok, "mount_path": "/"}, "invalid_request"),
        ({**ok, "mount_path": "/workspace"}, "invalid_request"),
        ({**ok, "mount_path": "/a/../etc"}, "invalid_request"),
        ({**ok, "subpath": "../up"}, "invalid_request"),
        ({**ok, "read_only": "yes"}, "invalid_request"),
    ]
    for spec, code in refusals:
        with pytest.raises(DomainError) as caught:
            volumes.parse_mounts(project, [spec])
        assert caught.value.code == code, spec
    with pytest.raises(DomainError) as caught:
        volumes.parse_mounts(project, [ok, {**ok, "mount_path": "/data/inner"}])
    assert caught.value.details == {"reason": "volume_overlapping_mounts"}


def test_read_write_mount_needs_a_store_that_bounds_it(store, project, volume, settings):
    spec = {"ref": "team-data", "mount_path": "/data", "read_only": False}
    if store.enforces_mount_quota:
        assert volumes.parse_mounts(project, [spec])[0]["read_only"] is False
    else:
        with pytest.raises(DomainError, match="cannot hold a read-write mount"):
            volumes.parse_mounts(project, [spec])


def test_sandbox_with_a_volume_through_the_api(api, runtime, store, volume, settings):
    if not isinstance(runtime, IsolatedDriver) or runtime.missing:
        pytest.skip("volumes need the isolated runtime (RUNTIME_ISOLATION=full)")
    spec = {"ref": "team-data", "mount_path": "/workspace/data", "read_only": False}
    if not store.enforces_mount_quota:
        spec["read_only"] = True
    created = api.post(
        "/v1/sandboxes",
        json.dumps({"template": "base", "volumes": [spec], "metadata": {"k": "v"}}),
        "application/json",
    )
    assert created.status_code == 201, created.content
    sandbox = created.json()
    attachment = sandbox["metadata"]["volume_attachments"][0]
    assert sandbox["metadata"]["k"] == "v"
    assert (attachment["volume_id"], attachment["mount_path"], attachment["state"]) == (
        volume["id"],
        "/workspace/data",
        "mounted",
    )
    listed = api.get(f"/v1/sandboxes/{sandbox['id']}/volumes").json()
    assert listed == [attachment]
    health = api.get(f"/v1/sandboxes/{sandbox['id']}/volumes/{attachment['id']}/health")
    assert health.json() == attachment
    later = api.post(f"/v1/sandboxes/{sandbox['id']}/volumes", "{}", "application/json")
    assert later.status_code == 501 and later.json()["code"] == "not_implemented"
    assert api.get(f"/v1/volumes/{volume['id']}").json()["mount_count"] == 1
    # A fork mounts what its source mounted.
    fork = api.post(f"/v1/sandboxes/{sandbox['id']}/fork").json()
    assert [a["volume_id"] for a in fork["metadata"]["volume_attachments"]] == [volume["id"]]
    assert api.get(f"/v1/volumes/{volume['id']}").json()["mount_count"] == 2
    busy = api.delete(f"/v1/volumes/{volume['id']}")
    assert busy.status_code == 409 and busy.json()["code"] == "volume_busy"
    assert busy.json()["details"] == {
        "reason": "volume_in_use",
        "sandbox_ids": sorted([sandbox["id"], fork["id"]]),
    }
    api.delete(f"/v1/sandboxes/{fork['id']}")
    api.delete(f"/v1/sandboxes/{sandbox['id']}")
    assert api.get(f"/v1/volumes/{volume['id']}").json()["mount_count"] == 0
    assert api.delete(f"/v1/volumes/{volume['id']}").status_code == 204


def test_forced_delete_of_a_mounted_volume(api, runtime, store, volume):
    if not isinstance(runtime, IsolatedDriver) or runtime.missing:
        pytest.skip("volumes need the isolated runtime (RUNTIME_ISOLATION=full)")
    spec = {"ref": volume["id"], "mount_path": "/workspace/data", "read_only": True}
    sandbox = api.post(
        "/v1/sandboxes", json.dumps({"template": "base", "volumes": [spec]}), "application/json"
    ).json()
    assert api.delete(f"/v1/volumes/{volume['id']}?force=true").status_code == 204
    assert api.get(f"/v1/volumes/{volume['id']}").json()["code"] == "not_found"
    assert api.get(f"/v1/sandboxes/{sandbox['id']}/volumes").json() == []
    api.delete(f"/v1/sandboxes/{sandbox['id']}")


# --- upload sessions stage in the volume (docs/volumes.md, "Uploads") --------------------


def _create_upload(api, volume_id: str, data: bytes, target: str, **extra):
    body = {"kind": "file", "target_path": target, "content_length": len(data), **extra}
    return post(api, volume_id, "uploads", body)


def _put_part(api, volume_id: str, upload_id: str, number: int, data: bytes, sha=None):
    return api.generic(
        "PUT", f"/v1/volumes/{volume_id}/uploads/{upload_id}/parts/{number}", data,
        content_type="application/octet-stream",
        HTTP_X_NULLSPACE_PART_SHA256=sha or hashlib.sha256(data).hexdigest(),
    )  # fmt: skip


def _staged_files(volume_id: str) -> list[str]:
    return sorted(p.name for p in host_root(volume_id).iterdir() if "nullspace-upload" in p.name)


def _used(api, volume_id: str) -> int:
    return api.get(f"/v1/volumes/{volume_id}").json()["used_bytes"]


def test_upload_parts_land_at_their_offsets_and_complete_is_a_rename(api, volume, settings):
    from console.sandboxes import uploads

    data = os.urandom(uploads.PART_SIZE + 1_000_000)  # two parts, the last one short
    digest = hashlib.sha256(data).hexdigest()
    before = _used(api, volume["id"])
    created = _create_upload(
        api, volume["id"], data, "/deep/dir/u.bin", whole_checksum_sha256=digest
    )
    assert created.status_code == 201, created.content
    session = created.json()["session"]
    upload_id = session["upload_id"]
    # The whole size is allocated in the volume at create: the quota counts it already.
    assert _used(api, volume["id"]) >= before + len(data)
    assert _staged_files(volume["id"]) == [f".nullspace-upload-{upload_id}.partial"]
    size = session["part_size"]
    parts = [data[:size], data[size:]]
    assert _put_part(api, volume["id"], upload_id, 1, parts[1]).status_code == 200  # out of order
    refused = _put_part(api, volume["id"], upload_id, 0, parts[0], sha="0" * 64)
    assert refused.status_code == 400, refused.content
    assert refused.json()["error_detail"]["reason"] == "invalid_part_checksum"
    state = api.get(f"/v1/volumes/{volume['id']}/uploads/{upload_id}").json()
    assert (state["next_part"], state["accepted_bytes"]) == (0, len(parts[1]))  # 0 not taken
    ok = _put_part(api, volume["id"], upload_id, 0, parts[0])
    assert ok.json()["status"] == "staged", ok.content
    assert not (host_root(volume["id"]) / "deep").exists()  # nothing at the target yet
    done = post(
        api, volume["id"], f"uploads/{upload_id}/complete", {"whole_checksum_sha256": digest}
    )
    assert done.status_code == 200, done.content
    assert done.json()["published_bytes"] == len(data)
    published = host_root(volume["id"]) / "deep" / "dir" / "u.bin"
    assert published.read_bytes() == data
    assert oct(published.stat().st_mode & 0o777) == oct(0o644)
    assert _staged_files(volume["id"]) == []
    assert not (settings.DATA_DIR / "upload-staging" / upload_id).exists()


def test_aborted_or_failed_upload_leaves_nothing_and_frees_the_quota(api, volume, settings):
    data = os.urandom(10 * 1024 * 1024)  # two of these do not fit the 16 MiB volume at once
    before = _used(api, volume["id"])
    first = _create_upload(api, volume["id"], data, "/a.bin").json()["session"]["upload_id"]
    assert _put_part(api, volume["id"], first, 0, data[: 8 * 1024 * 1024]).status_code == 200
    second = _create_upload(api, volume["id"], data, "/b.bin")
    assert second.json()["code"] == "volume_quota_exceeded", second.content
    assert api.delete(f"/v1/volumes/{volume['id']}/uploads/{first}").status_code == 204
    assert _staged_files(volume["id"]) == []
    assert not (settings.DATA_DIR / "upload-staging" / first).exists()
    assert _used(api, volume["id"]) <= before + 64 * 1024  # the space is back
    # Now it fits; a whole checksum that does not match fails it, and frees it again.
    third = _create_upload(api, volume["id"], data, "/c.bin").json()["session"]
    size = third["part_size"]
    for number, start in enumerate(range(0, len(data), size)):
        part = data[start : start + size]
        assert _put_part(api, volume["id"], third["upload_id"], number, part).status_code == 200
    failed = post(
        api, volume["id"], f"uploads/{third['upload_id']}/complete",
        {"whole_checksum_sha256": "0" * 64},
    )  # fmt: skip
    assert failed.json()["error_detail"]["reason"] == "whole_checksum_mismatch", failed.content
    assert not (host_root(volume["id"]) / "c.bin").exists()
    assert _staged_files(volume["id"]) == []
    assert _used(api, volume["id"]) <= before + 64 * 1024


def test_expired_upload_frees_its_staged_file(api, volume, settings):
    from console.models import UploadSession
    from console.sandboxes import uploads

    data = os.urandom(1024)
    upload_id = _create_upload(api, volume["id"], data, "/e.bin").json()["session"]["upload_id"]
    assert _staged_files(volume["id"]) != []
    UploadSession.objects.filter(public_id=upload_id).update(expires_at=timezone.now())
    assert uploads.expire_stale() == 1
    assert _staged_files(volume["id"]) == []
    late = _put_part(api, volume["id"], upload_id, 0, data)
    assert late.json()["error_detail"]["reason"] == "upload_expired", late.content
