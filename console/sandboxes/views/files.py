"""The sandbox file browser: list a directory, view a text file, download, upload.

All paths go through console/sandboxes/files.py (the same domain module as /v1 files),
whose runtime file store cannot leave the sandbox's root. An upload is refused
from its Content-Length before the body is parsed when it is over MAX_FILE_BYTES,
and `write_chunks` enforces the limit again while it streams to a temporary file
next to the target, renamed into place when complete.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from console.access import TeamRequest, team_member_required
from console.errors import DomainError
from console.htmx import is_fragment_request, render_page
from console.models import Role, Sandbox
from console.runtime.base import RuntimeError_
from console.sandboxes import files as sandbox_files
from console.sandboxes import service as sandboxes
from console.sandboxes.views.context import file_context, state_context
from console.sandboxes.views.sandboxes import DETAIL, detail_url, project_sandbox


def _files(request: TeamRequest, sandbox: Sandbox, where: str | None) -> HttpResponse:
    if not is_fragment_request(request):
        return redirect(
            detail_url(request, sandbox, f"?path={where or sandbox_files.WORKSPACE}#files")
        )
    context = {**state_context(request, sandbox), **file_context(sandbox, where)}
    return render_page(request, DETAIL, context, partial="file-browser")


@require_GET
@team_member_required(Role.VIEWER)
def file_browser(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    return _files(request, project_sandbox(request, sandbox_id), request.GET.get("path"))


@require_GET
@team_member_required(Role.VIEWER)
def file_download(request: TeamRequest, sandbox_id: str) -> HttpResponseBase:
    sandbox = project_sandbox(request, sandbox_id)
    try:
        spath = sandbox_files.locate(sandbox.runtime_id, request.GET.get("path", ""))
        handle = sandbox_files.open_file(sandbox.runtime_id, spath)
    except RuntimeError_ as exc:
        messages.error(request, str(exc))
        return _files(request, sandbox, None)
    return FileResponse(handle, as_attachment=True, filename=PurePosixPath(spath).name)


def _upload_name(name: str) -> str | None:
    """The bare file name a browser sent, or None when it is unusable."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return None if base in ("", ".", "..") else base


@require_POST
@team_member_required(Role.MEMBER)
def file_upload(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    directory = request.GET.get("dir") or sandbox_files.WORKSPACE
    limit = settings.MAX_FILE_BYTES
    # Refuse before Django parses (and spools) the body; write_chunks re-checks the bytes.
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 64 * 1024:
        messages.error(request, f"That file is over the {limit // (1024 * 1024)} MiB upload limit.")
        return _files(request, sandbox, directory)
    uploaded = request.FILES.get("file")
    name = _upload_name(uploaded.name or "") if uploaded else None
    if uploaded is None or name is None:
        messages.error(request, "Choose a file to upload.")
        return _files(request, sandbox, directory)
    target = f"{directory.rstrip('/')}/{name}"
    try:
        sandboxes.require_running(sandbox)
        sandbox_files.write_chunks(sandbox.runtime_id, target, uploaded.chunks(), limit=limit)
    except (DomainError, RuntimeError_) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    else:
        messages.success(request, f"Uploaded {target} ({uploaded.size} bytes).")
    return _files(request, sandbox, directory)


S = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/files/"
urlpatterns = [
    path(S, file_browser, name="sandbox-files"),
    path(S + "download/", file_download, name="sandbox-file-download"),
    path(S + "upload/", file_upload, name="sandbox-file-upload"),
]
