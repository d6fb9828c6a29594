"""Console volume pages on a real volume store: the list, the file browser's actions,
htmx fragments against full pages, confirmations, roles, and another project's volume."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from console.actor import Actor
from console.models import Volume, VolumeAttachment
from console.sandboxes import files as sandbox_files
from console.volumes import service as volumes
from console.volumes.store import get_store, images_work
from tests.factories import make_sandbox_row

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def store(settings, tmp_path):
    settings.VOLUMES_ROOT = tmp_path / "volumes"
    settings.VOLUMES_BACKEND = "image" if images_work() else "directory"
    settings.VOLUME_MAX_BYTES = 16 * 1024 * 1024
    settings.DATA_DIR = tmp_path
    made = get_store()
    yield made
    made.destroy_all()


@pytest.fixture
def volume(store, project):
    made = volumes.create_volume(project, "team-data", actor=Actor())
    sandbox_files.write_chunks(volumes.files(made), "/models/a.txt", [b"alpha"])
    sandbox_files.write_chunks(volumes.files(made), "/top.txt", [b"top"])
    return made


def url(name, project, **kwargs):
    return reverse(
        name, kwargs={"team_slug": project.team.slug, "project_slug": project.slug, **kwargs}
    )


def vurl(name, volume, query=""):
    return url(name, volume.project, volume_id=volume.public_id) + query


class Files:
    """The volume's files through the same layer the views use."""

    def __init__(self, volume):
        self.store = volumes.files(volume)
        self.root = Path(self.store.root)

    def read_text(self, path):
        return sandbox_files.read_text(self.store, path)

    def info(self, path):
        return sandbox_files.info(self.store, path)

    def exists(self, path):
        return sandbox_files.exists(self.store, path)

    def listing(self, path):
        return sandbox_files.listing(self.store, path)


def files(volume):
    return Files(volume)


def test_list_shows_usage_mounts_and_created(viewer_client, project, volume):
    sandbox = make_sandbox_row(project)
    VolumeAttachment.objects.create(
        volume=volume, sandbox=sandbox, mount_path="/data", read_only=True
    )
    page = viewer_client.get(url("volume-list", project)).content.decode()
    assert "team-data" in page and volume.public_id in page
    assert "<meter" in page and " of " in page
    assert sandbox.public_id in page and "/data (ro)" in page
    assert "Create volume" not in page  # a viewer cannot create


def test_create_from_the_list(member_client, project, store):
    response = member_client.post(url("volume-create", project), {"name": "made-here"})
    made = Volume.objects.get(project=project, name="made-here")
    assert response.status_code == 302 and response["Location"] == vurl("volume-detail", made)
    bad = member_client.post(url("volume-create", project), {"name": "no/slash"}, follow=True)
    assert "volume name" in bad.content.decode()


def test_detail_lists_files_and_mounts(viewer_client, volume):
    page = viewer_client.get(vurl("volume-detail", volume)).content.decode()
    assert "models/" in page and "top.txt" in page and "Mounted by" in page
    deeper = viewer_client.get(vurl("volume-files", volume, "?path=/models"), **HTMX)
    assert deeper.status_code == 200 and "a.txt" in deeper.content.decode()
    assert "<html" not in deeper.content.decode()  # the fragment only


def test_download_a_file_and_a_folder_as_tar(viewer_client, volume):
    response = viewer_client.get(vurl("volume-download", volume, "?path=/models/a.txt"))
    assert b"".join(response.streaming_content) == b"alpha"
    response = viewer_client.get(vurl("volume-download", volume, "?path=/models"))
    assert response["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as tar:
        assert tar.getnames() == ["a.txt"]


def test_upload_mkdir_rename_delete(member_client, volume):
    upload = SimpleUploadedFile("new.txt", b"new content")
    response = member_client.post(
        vurl("volume-upload", volume, "?dir=/models"), {"file": upload}, **HTMX
    )
    assert response.status_code == 200 and "new.txt" in response.content.decode()
    assert files(volume).read_text("/models/new.txt") == "new content"
    member_client.post(vurl("volume-mkdir", volume, "?dir=/"), {"name": "made"}, **HTMX)
    assert files(volume).info("/made")["is_dir"]
    member_client.post(
        vurl("volume-rename", volume, "?path=/top.txt"), {"name": "renamed.txt"}, **HTMX
    )
    assert not files(volume).exists("/top.txt") and files(volume).exists("/renamed.txt")
    confirm = member_client.get(vurl("volume-remove", volume, "?path=/models"))
    assert "Delete /models?" in confirm.content.decode()  # the no-JavaScript confirmation
    member_client.post(vurl("volume-remove", volume, "?path=/models"), **HTMX)
    assert not files(volume).exists("/models")


@pytest.mark.parametrize("name", ["", "..", "a/b", "../../etc"])
def test_names_with_a_path_are_refused(member_client, volume, name):
    member_client.post(vurl("volume-mkdir", volume, "?dir=/"), {"name": name}, **HTMX)
    member_client.post(vurl("volume-rename", volume, "?path=/top.txt"), {"name": name}, **HTMX)
    assert sorted(e["name"] for e in files(volume).listing("/")) == ["models", "top.txt"]


def test_query_paths_stay_inside(member_client, viewer_client, volume):
    escape = viewer_client.get(
        vurl("volume-download", volume, "?path=/../../etc/passwd"), follow=True
    )
    assert b"root:" not in b"".join(getattr(escape, "streaming_content", [escape.content]))
    member_client.post(vurl("volume-remove", volume, "?path=/.."), **HTMX)
    assert files(volume).exists("/top.txt")


def test_upload_over_quota_leaves_nothing(member_client, volume):
    big = SimpleUploadedFile("big.bin", b"x" * (17 * 1024 * 1024))
    response = member_client.post(vurl("volume-upload", volume, "?dir=/"), {"file": big}, **HTMX)
    assert "full" in response.headers.get("HX-Trigger", "")
    assert sorted(e["name"] for e in files(volume).listing("/")) == ["models", "top.txt"]
    assert not [p for p in files(volume).root.iterdir() if p.name.startswith(".")]


def test_delete_volume_confirm_and_busy(member_client, project, volume):
    sandbox = make_sandbox_row(project)
    VolumeAttachment.objects.create(volume=volume, sandbox=sandbox, mount_path="/data")
    blocked = member_client.get(vurl("volume-delete", volume)).content.decode()
    assert sandbox.public_id in blocked and "Delete volume" not in blocked.split("</h1>")[1]
    member_client.post(vurl("volume-delete", volume))
    assert Volume.objects.filter(pk=volume.pk).exists()  # refused: mounted
    response = member_client.post(vurl("volume-delete", volume, "?force=1"))
    assert response.status_code == 302 and not Volume.objects.filter(pk=volume.pk).exists()


def test_viewer_cannot_change_anything(viewer_client, volume):
    for name, query in [
        ("volume-upload", "?dir=/"),
        ("volume-mkdir", "?dir=/"),
        ("volume-rename", "?path=/top.txt"),
        ("volume-remove", "?path=/top.txt"),
        ("volume-delete", ""),
    ]:
        assert viewer_client.post(vurl(name, volume, query), {"name": "x"}).status_code == 403
    assert files(volume).exists("/top.txt")


def test_another_projects_volume_is_a_404(outsider_client, other_project, volume, owner_client):
    for name in [
        "volume-detail",
        "volume-files",
        "volume-download",
        "volume-delete",
        "volume-remove",
    ]:
        assert owner_client.get(
            reverse(name, kwargs={"team_slug": other_project.team.slug,
                                  "project_slug": other_project.slug,
                                  "volume_id": volume.public_id})
        ).status_code in (403, 404)  # fmt: skip
    theirs = volumes.create_volume(other_project, "theirs", actor=Actor())
    mine = volume.project
    for name in ["volume-detail", "volume-files", "volume-download"]:
        response = owner_client.get(url(name, mine, volume_id=theirs.public_id))
        assert response.status_code == 404
    response = owner_client.post(url("volume-remove", mine, volume_id=theirs.public_id) + "?path=/")
    assert response.status_code == 404
