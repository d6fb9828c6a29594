"""The desktop panel of a desktop sandbox's console page: the live screen (the managed
viewer, framed), a screenshot download, and recording start/stop with downloads.

Members start the stream when they open the panel (interactive); viewers watch a stream
that runs, in the mode it runs in, and cannot start one or record."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from console.access import TeamRequest, team_member_required
from console.actor import Actor
from console.desktop import capture, recordings, stream
from console.desktop import session as desktop
from console.errors import DomainError
from console.htmx import is_fragment_request, render_page
from console.models import RecordingStatus, Role, Sandbox
from console.runtime import get_driver
from console.sandboxes import service as sandboxes
from console.sandboxes.views.sandboxes import detail_url, project_sandbox
from console.views.errors import status_for

PANEL = "console/desktop/panel.html"


def _can_act(request: TeamRequest) -> bool:
    return request.membership.has_role(Role.MEMBER)


def _panel(request: TeamRequest, sandbox: Sandbox, error: str = "") -> HttpResponse:
    if request.method == "POST" and not is_fragment_request(request):
        if error:
            messages.error(request, error)
        return redirect(detail_url(request, sandbox, "#desktop"))
    context: dict = {"sandbox": sandbox, "can_act": _can_act(request), "error": error}
    if sandbox.status == "running" and not error:
        try:
            session = desktop.desktop_of(sandbox)
            if not session.stream_nonce and context["can_act"]:
                stream.start(sandbox, session, False, actor=Actor.of(request))
            if session.stream_nonce:
                context["viewer_url"] = stream.viewer_url(
                    sandbox, stream.auth_key(sandbox, session)
                )
                context["view_only"] = session.stream_view_only
            context["session"] = session
        except DomainError as exc:
            context["error"] = exc.message
    context["recordings"] = list(sandbox.desktop_recordings.all()[:20])
    context["recording_now"] = any(
        r.status == RecordingStatus.RECORDING for r in context["recordings"]
    )
    return render_page(request, PANEL, context)


@require_GET
@team_member_required(Role.VIEWER)
def panel(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    return _panel(request, project_sandbox(request, sandbox_id))


@require_GET
@team_member_required(Role.VIEWER)
def screenshot(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    try:
        session = desktop.desktop_of(sandbox)
        data = capture.take(sandbox, session, capture.Shot(0, 0, session.width, session.height))
    except DomainError as exc:
        return HttpResponse(exc.message, status=status_for(exc), content_type="text/plain")
    response = HttpResponse(data, content_type="image/png")
    response["Content-Disposition"] = f'attachment; filename="{sandbox.public_id}.png"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@team_member_required(Role.MEMBER)
def recording_start(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    try:
        recordings.start(sandbox, desktop.desktop_of(sandbox), request.POST.get("name") or None)
    except DomainError as exc:
        return _panel(request, sandbox, exc.message)
    return _panel(request, sandbox)


@require_POST
@team_member_required(Role.MEMBER)
def recording_stop(request: TeamRequest, sandbox_id: str, recording_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    try:
        recordings.stop(sandbox, recording_id)
    except DomainError as exc:
        return _panel(request, sandbox, exc.message)
    return _panel(request, sandbox)


@require_GET
@team_member_required(Role.VIEWER)
def recording_download(
    request: TeamRequest, sandbox_id: str, recording_id: str
) -> HttpResponseBase:
    sandbox = project_sandbox(request, sandbox_id)
    try:
        recording = recordings.get(sandbox, recording_id)
        files = get_driver().files(sandbox.runtime_id)
        handle = sandboxes.driver_call(lambda: files.open_read(recording.file_path))
    except DomainError as exc:
        return HttpResponse(exc.message, status=status_for(exc), content_type="text/plain")
    response = FileResponse(handle, content_type="video/mp4")
    response["Content-Disposition"] = f'attachment; filename="{recording.public_id}.mp4"'
    return response


S = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/desktop/"
urlpatterns = [
    path(S, panel, name="sandbox-desktop"),
    path(S + "screenshot/", screenshot, name="sandbox-desktop-screenshot"),
    path(S + "recordings/", recording_start, name="sandbox-desktop-record"),
    path(
        S + "recordings/<str:recording_id>/stop/",
        recording_stop,
        name="sandbox-desktop-record-stop",
    ),
    path(
        S + "recordings/<str:recording_id>/download/",
        recording_download,
        name="sandbox-desktop-recording",
    ),
]
