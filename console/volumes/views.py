"""Volume pages: the project's volumes (size against quota, mounts, created), and one
volume's page with its file browser (list, upload with progress, download a file or a
folder as a tar, new folder, rename, delete with confirmation) and the sandboxes that
mount it.

Every change goes through console/volumes/service.py and console/sandboxes/files.py on the
volume's file store (the same code as /v1/volumes), so paths never leave the volume and every write is held to the
quota. Another project's volume is a 404.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from console.access import TeamRequest, team_member_required
from console.actor import Actor
from console.api.errors import ApiError
from console.errors import DomainError
from console.htmx import (
    is_fragment_request,
    redirect_or_client_redirect,
    render_confirm,
    render_page,
)
from console.models import LIVE_STATUSES, Role, Volume
from console.runtime.base import FileStore, RuntimeError_
from console.sandboxes import files as sandbox_files
from console.sandboxes.api.files import file_response
from console.volumes import service as volumes

LIST = "console/volumes/list.html"
DETAIL = "console/volumes/detail.html"


def project_volume(request: TeamRequest, volume_id: str) -> Volume:
    volume = Volume.objects.filter(project=request.project, public_id=volume_id).first()
    if volume is None:
        raise Http404("No such volume in this project")
    return volume


def _url(request: TeamRequest, name: str, volume: Volume | None = None, query: str = "") -> str:
    kwargs: dict[str, Any] = {
        "team_slug": request.team.slug,
        "project_slug": request.project.slug,
    }
    if volume is not None:
        kwargs["volume_id"] = volume.public_id
    return reverse(name, kwargs=kwargs) + query


def _can_act(request: TeamRequest) -> bool:
    return bool(request.membership.has_role(Role.MEMBER))


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


# --- the list ----------------------------------------------------------------------------


def _list_context(request: TeamRequest) -> dict[str, Any]:
    rows = []
    queryset = Volume.objects.filter(project=request.project).prefetch_related(
        "attachments__sandbox"
    )
    for volume in queryset:
        mounts = [a for a in volume.attachments.all() if a.sandbox.status in LIVE_STATUSES]
        info = volumes.volume_to_dict(volume, mount_count=len(mounts))
        rows.append({"volume": volume, "info": info, "mounts": mounts})
    return {"rows": rows, "can_act": _can_act(request)}


@require_GET
@team_member_required(Role.VIEWER)
def volume_list(request: TeamRequest) -> HttpResponse:
    return render_page(request, LIST, _list_context(request), partial="volume-table")


@require_POST
@team_member_required(Role.MEMBER)
def volume_create(request: TeamRequest) -> HttpResponse:
    name = (request.POST.get("name") or "").strip()
    try:
        volume = volumes.create_volume(request.project, name, actor=Actor.of(request))
    except DomainError as error:
        messages.error(request, error.message)
        if is_fragment_request(request):
            return render_page(request, LIST, _list_context(request), partial="volume-table")
        return redirect(_url(request, "volume-list"))
    messages.success(request, f"Volume {volume.name} created.")
    return redirect_or_client_redirect(request, _url(request, "volume-detail", volume))


@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def volume_delete(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    force = request.GET.get("force") == "1"
    users = [a.sandbox.public_id for a in volumes.live_attachments(volume)]
    if request.method == "GET":
        blocked = ""
        if users and not force:
            blocked = f"Mounted by {', '.join(users)}: kill them first, or delete anyway."
        return render_confirm(
            request,
            title=f"Delete volume {volume.name}?",
            body="Every file in it is deleted for good."
            + (" Sandboxes that mount it lose it." if users else ""),
            cancel=_url(request, "volume-detail", volume),
            button="Delete volume",
            blocked=blocked,
        )
    try:
        volumes.delete_volume(volume, force=force)
    except DomainError as error:
        messages.error(request, error.message)
        return redirect_or_client_redirect(request, _url(request, "volume-detail", volume))
    messages.success(request, f"Volume {volume.name} deleted.")
    return redirect_or_client_redirect(request, _url(request, "volume-list"))


# --- one volume and its files --------------------------------------------------------------


def _normal(value: str | None) -> str:
    """A volume path from a query value ("/" when absent); the tree re-checks escapes."""
    text = (value or "/").strip() or "/"
    return str(PurePosixPath("/", text))


def breadcrumbs(where: str) -> list[tuple[str, str]]:
    crumbs = [("volume", "/")]
    current = ""
    for part in PurePosixPath(where).parts[1:]:
        current = f"{current}/{part}"
        crumbs.append((part, current))
    return crumbs


def _tree(volume: Volume) -> FileStore | None:
    try:
        return volumes.files(volume)
    except DomainError:
        return None


def _files_context(request: TeamRequest, volume: Volume, where: str | None) -> dict[str, Any]:
    where = _normal(where)
    context: dict[str, Any] = {
        "volume": volume,
        "dir": where,
        "entries": [],
        "crumbs": breadcrumbs(where),
        "file_note": "",
        "can_act": _can_act(request),
        "max_upload_bytes": settings.MAX_FILE_BYTES,
    }
    tree = _tree(volume)
    if tree is None:
        context["file_note"] = "The volume's storage is unavailable."
        return context
    try:
        entries = sandbox_files.listing(tree, where)
    except RuntimeError_ as exc:
        context["file_note"] = str(exc)
        return context
    for entry in entries:
        entry["modified"] = datetime.fromisoformat(entry["modified_time"].replace("Z", "+00:00"))
    context["entries"] = sorted(entries, key=lambda e: (not e["is_dir"], e["name"].lower()))
    return context


def _detail_context(request: TeamRequest, volume: Volume, where: str | None) -> dict[str, Any]:
    mounts = volumes.live_attachments(volume)
    return {
        **_files_context(request, volume, where),
        "info": volumes.volume_to_dict(volume, mount_count=len(mounts)),
        "mounts": mounts,
    }


@require_GET
@team_member_required(Role.VIEWER)
def volume_detail(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    return render_page(request, DETAIL, _detail_context(request, volume, request.GET.get("path")))


def _files(request: TeamRequest, volume: Volume, where: str | None) -> HttpResponse:
    """After a file action: the browser fragment for htmx (and a `volume-changed` event,
    on which the usage card refreshes), the page otherwise."""
    if not is_fragment_request(request):
        return redirect(_url(request, "volume-detail", volume, f"?path={where or '/'}"))
    response = render_page(
        request, DETAIL, _detail_context(request, volume, where), partial="volume-files"
    )
    if request.method == "POST":
        trigger_client_event(response, "volume-changed")
    return response


@require_GET
@team_member_required(Role.VIEWER)
def volume_usage(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    if not is_fragment_request(request):
        return redirect(_url(request, "volume-detail", volume))
    context = {"volume": volume, "info": volumes.volume_to_dict(volume)}
    return render_page(request, DETAIL, context, partial="volume-usage")


@require_GET
@team_member_required(Role.VIEWER)
def volume_files(request: TeamRequest, volume_id: str) -> HttpResponse:
    return _files(request, project_volume(request, volume_id), request.GET.get("path"))


@require_GET
@team_member_required(Role.VIEWER)
def volume_download(request: TeamRequest, volume_id: str) -> HttpResponseBase:
    """A file as itself, a folder as an uncompressed tar."""
    volume = project_volume(request, volume_id)
    where = _normal(request.GET.get("path"))
    tree = _tree(volume)
    try:
        if tree is None:
            raise ApiError("volume_error", "The volume's storage is unavailable.")
        response = file_response(tree, where, as_tar=True)
        name = PurePosixPath(where).name or volume.name
        if response["Content-Type"] == "application/x-tar":
            name += ".tar"
        response["Content-Disposition"] = content_disposition_header(True, name)
        return response
    except (DomainError, RuntimeError_) as exc:
        messages.error(request, _message(exc))
        return redirect(_url(request, "volume-detail", volume))


def _child(directory: str, name: str) -> str | None:
    """`directory/name` for a bare name a person typed, or None when it is not one."""
    if name in ("", ".", "..") or "/" in name or "\x00" in name:
        return None
    return f"{directory.rstrip('/')}/{name}"


def _upload_child(directory: str, name: str) -> str | None:
    """Browsers may send a path (C:\\Users\\...\\a.txt); keep its last part."""
    return _child(directory, PurePosixPath(name.replace("\\", "/")).name)


@require_POST
@team_member_required(Role.MEMBER)
def volume_upload(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    directory = _normal(request.GET.get("dir"))
    limit = settings.MAX_FILE_BYTES
    # Refuse before Django parses (and spools) the body; write_chunks re-checks the bytes.
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 64 * 1024:
        messages.error(request, f"That upload is over the {limit // (1024 * 1024)} MiB limit.")
        return _files(request, volume, directory)
    uploaded = request.FILES.getlist("file")
    if not uploaded:
        messages.error(request, "Choose a file to upload.")
        return _files(request, volume, directory)
    tree = _tree(volume)
    done = []
    for item in uploaded:
        target = _upload_child(directory, item.name or "")
        try:
            if tree is None or target is None:
                raise ApiError("invalid_request", f"Cannot upload {item.name!r} here.")
            sandbox_files.write_chunks(tree, target, item.chunks(), limit=limit)
        except (DomainError, RuntimeError_) as exc:
            messages.error(request, f"{item.name}: {_message(exc)}")
            break
        done.append(target)
    if done:
        messages.success(request, f"Uploaded {', '.join(done)}.")
    return _files(request, volume, directory)


@require_POST
@team_member_required(Role.MEMBER)
def volume_mkdir(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    directory = _normal(request.GET.get("dir"))
    target = _child(directory, (request.POST.get("name") or "").strip())
    try:
        tree = _tree(volume)
        if tree is None or target is None:
            raise ApiError("invalid_request", "Give the new folder a name (no '/').")
        sandbox_files.mkdir(tree, target)
    except (DomainError, RuntimeError_) as exc:
        messages.error(request, _message(exc))
    else:
        messages.success(request, f"Created {target}.")
    return _files(request, volume, directory)


@require_POST
@team_member_required(Role.MEMBER)
def volume_rename(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    old = _normal(request.GET.get("path"))
    directory = str(PurePosixPath(old).parent)
    new = _child(directory, (request.POST.get("name") or "").strip())
    try:
        tree = _tree(volume)
        if tree is None or new is None or old == "/":
            raise ApiError("invalid_request", "Give a new name (no '/').")
        sandbox_files.rename(tree, old, new)
    except (DomainError, RuntimeError_) as exc:
        messages.error(request, _message(exc))
    else:
        messages.success(request, f"Renamed {old} to {new}.")
    return _files(request, volume, directory)


@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def volume_remove(request: TeamRequest, volume_id: str) -> HttpResponse:
    volume = project_volume(request, volume_id)
    target = _normal(request.GET.get("path"))
    directory = str(PurePosixPath(target).parent)
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Delete {target}?",
            body="A folder is deleted with everything in it. This cannot be undone.",
            cancel=_url(request, "volume-detail", volume, f"?path={directory}"),
            button="Delete",
        )
    try:
        tree = _tree(volume)
        if tree is None:
            raise ApiError("volume_error", "The volume's storage is unavailable.")
        sandbox_files.remove(tree, target)
    except (DomainError, RuntimeError_) as exc:
        messages.error(request, _message(exc))
    else:
        messages.success(request, f"Deleted {target}.")
    return _files(request, volume, directory)


P = "t/<slug:team_slug>/p/<slug:project_slug>/volumes/"
V = P + "<str:volume_id>/"
urlpatterns = [
    path(P, volume_list, name="volume-list"),
    path(P + "new/", volume_create, name="volume-create"),
    path(V, volume_detail, name="volume-detail"),
    path(V + "delete/", volume_delete, name="volume-delete"),
    path(V + "usage/", volume_usage, name="volume-usage"),
    path(V + "files/", volume_files, name="volume-files"),
    path(V + "files/download/", volume_download, name="volume-download"),
    path(V + "files/upload/", volume_upload, name="volume-upload"),
    path(V + "files/mkdir/", volume_mkdir, name="volume-mkdir"),
    path(V + "files/rename/", volume_rename, name="volume-rename"),
    path(V + "files/delete/", volume_remove, name="volume-remove"),
]
