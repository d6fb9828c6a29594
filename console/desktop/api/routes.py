"""/v1/sandboxes/{id}/desktop/...: every desktop route of the 0.1.9 client (docs/desktop.md).

Views parse and shape; the work is in the modules beside this one. Every route loads the
sandbox from the key's project (another project's sandbox is a 404) and a running
desktop (desktop_of restarts one lost to a resume or fork)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import path

from console.actor import Actor
from console.api.auth import READ, WRITE, api_key_required, methods
from console.api.errors import ApiError
from console.desktop import capture, inputs, launch, recordings, stream, windows
from console.desktop import session as desktop
from console.desktop.api import viewer
from console.models import DesktopSession, RecordingStatus, Sandbox
from console.runtime import get_driver
from console.sandboxes import service as sandboxes

CAPABILITIES = {
    "version": 1,
    "capture": {
        "compressed_formats": list(capture.FORMATS),
        "region": True,
        "cursor_overlay": True,
    },
    "input": {"mouse": True, "keyboard": True},
    "display": {"topology_model": "single_screen", "multi_monitor": False, "primary_monitor": True},
    "windows": {
        "class_name": True,
        "active": True,
        "pid": True,
        "desktop": True,
        "desktop_name": True,
    },
    "launch": {"modes": ["executable", "desktop_entry"], "uri_argument_for_desktop_entry": True},
    "open": {"target_kinds": ["url", "file"]},
    "clipboard": {
        "text_read": True,
        "text_write": True,
        "viewer_panel": False,
        "view_only_copy": False,
    },
    "streaming": {
        "raw_vnc": False,
        "managed_viewer": True,
        "view_only": True,
        "default_surface": "managed_viewer",
        "raw_vnc_role": "disabled",
        "raw_vnc_mode": "disabled",
        "raw_vnc_auth": "none",
        "managed_viewer_auth_required": True,
    },
    "recording": {"basic": True},
}

Handler = Callable[[Sandbox, DesktopSession, dict[str, Any]], Any]


def _load(request: HttpRequest, sandbox_id: str) -> tuple[Sandbox, DesktopSession]:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)  # type: ignore[attr-defined]
    return sandbox, desktop.desktop_of(sandbox)


def _body(request: HttpRequest) -> dict[str, Any]:
    return getattr(request, "json", None) or {}


def _action(handler: Handler) -> Callable[..., HttpResponse]:
    """A POST that acts on the desktop and answers 204."""

    @api_key_required(WRITE)
    def view(request: HttpRequest, sandbox_id: str) -> HttpResponse:
        sandbox, session = _load(request, sandbox_id)
        handler(sandbox, session, _body(request))
        return HttpResponse(status=204)

    return view


def _image(data: bytes, fmt: str = "png") -> HttpResponse:
    response = HttpResponse(data, content_type=capture.FORMATS[fmt])
    response["Cache-Control"] = "no-store"
    return response


@api_key_required(WRITE)
def screenshot(request: HttpRequest, sandbox_id: str) -> HttpResponse:
    sandbox, session = _load(request, sandbox_id)
    if _body(request):
        raise ApiError("invalid_request", "screenshot takes no options; use screenshot/compressed")
    shot = capture.Shot(0, 0, session.width, session.height)
    return _image(capture.take(sandbox, session, shot))


@api_key_required(WRITE)
def screenshot_region(request: HttpRequest, sandbox_id: str) -> HttpResponse:
    sandbox, session = _load(request, sandbox_id)
    body = _body(request)
    unknown = sorted(set(body) - {"x", "y", "width", "height"})
    if unknown:
        raise ApiError("invalid_request", f"unknown option(s): {', '.join(unknown)}")
    shot = capture.Shot(*capture.region(session, body))
    return _image(capture.take(sandbox, session, shot))


@api_key_required(WRITE)
def screenshot_compressed(request: HttpRequest, sandbox_id: str) -> HttpResponse:
    sandbox, session = _load(request, sandbox_id)
    shot = capture.compressed(session, _body(request))
    return _image(capture.take(sandbox, session, shot), shot.format)


@api_key_required(READ)
def screen_size(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    _, session = _load(request, sandbox_id)
    return JsonResponse({"width": session.width, "height": session.height})


@api_key_required(READ)
def cursor(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse(windows.cursor(sandbox, session))


@api_key_required(READ)
def display(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    _, session = _load(request, sandbox_id)
    return JsonResponse(windows.display(session))


@api_key_required(READ)
def capabilities(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    _load(request, sandbox_id)
    return JsonResponse(CAPABILITIES)


@api_key_required(READ)
def window_list(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse(windows.list_windows(sandbox, session), safe=False)


@api_key_required(READ)
def window_current(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse({"window_id": windows.current_window(sandbox, session)})


@api_key_required(READ)
def window_title(request: HttpRequest, sandbox_id: str, window_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse({"title": windows.window_title(sandbox, session, window_id)})


@api_key_required(READ)
def clipboard_get(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse({"text": windows.clipboard_get(sandbox, session)})


@api_key_required(WRITE)
def clipboard_set(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    text = windows.clipboard_set(sandbox, session, _body(request).get("text"))
    return JsonResponse({"text": text})


@api_key_required(WRITE)
def launch_app(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse({"pid": launch.launch(sandbox, session, _body(request))})


@api_key_required(WRITE)
def open_target(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    return JsonResponse({"pid": launch.open_target(sandbox, session, _body(request).get("target"))})


# --- stream ------------------------------------------------------------------------------


@api_key_required(READ)
def stream_info(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, _ = _load(request, sandbox_id)
    raise stream.raw_vnc_refused(sandbox)


@api_key_required(WRITE)
def stream_start(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    body = _body(request)
    unknown = sorted(set(body) - {"view_only"})
    if unknown:
        raise ApiError("invalid_request", f"unknown option(s): {', '.join(unknown)}")
    stream.start(sandbox, session, body.get("view_only", False), actor=Actor.of(request))
    return JsonResponse(stream.managed_info(sandbox, session))


@api_key_required(WRITE)
def stream_stop(request: HttpRequest, sandbox_id: str) -> HttpResponse:
    sandbox, session = _load(request, sandbox_id)
    stream.stop(sandbox, session, actor=Actor.of(request))
    return HttpResponse(status=204)


@api_key_required(READ)
def stream_auth_key(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    key = stream.auth_key(sandbox, session)
    return JsonResponse({"auth_key": key, "viewer_url": stream.viewer_url(sandbox, key)})


# --- recordings --------------------------------------------------------------------------


@api_key_required(WRITE)
def recording_start(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, session = _load(request, sandbox_id)
    recording = recordings.start(sandbox, session, _body(request).get("name"))
    return JsonResponse(recordings.to_dict(recording))


@api_key_required(WRITE)
def recording_stop(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, _ = _load(request, sandbox_id)
    recording = recordings.stop(sandbox, _body(request).get("recording_id"))
    return JsonResponse(recordings.to_dict(recording))


@api_key_required(READ)
def recording_list(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox, _ = _load(request, sandbox_id)
    found = sandbox.desktop_recordings.all()[: recordings.MAX_RECORDINGS]
    return JsonResponse([recordings.to_dict(r) for r in found], safe=False)


@api_key_required(READ)
def recording_get(request: HttpRequest, sandbox_id: str, recording_id: str) -> JsonResponse:
    sandbox, _ = _load(request, sandbox_id)
    return JsonResponse(recordings.to_dict(recordings.get(sandbox, recording_id)))


@api_key_required(WRITE)
def recording_delete(request: HttpRequest, sandbox_id: str, recording_id: str) -> HttpResponse:
    sandbox, _ = _load(request, sandbox_id)
    recordings.delete(sandbox, recording_id)
    return HttpResponse(status=204)


@api_key_required(READ)
def recording_download(
    request: HttpRequest, sandbox_id: str, recording_id: str
) -> HttpResponseBase:
    sandbox, _ = _load(request, sandbox_id)
    recording = recordings.get(sandbox, recording_id)
    if recording.status != RecordingStatus.STOPPED:
        raise ApiError(
            "recording_not_ready",
            f"Recording {recording_id} is {recording.status}; stop it first",
            status=409,
        )
    files = get_driver().files(sandbox.runtime_id)
    handle = sandboxes.driver_call(lambda: files.open_read(recording.file_path))
    response = FileResponse(handle, content_type="video/mp4")
    response["Content-Disposition"] = f'attachment; filename="{recording.public_id}.mp4"'
    return response


_base = "sandboxes/<str:sandbox_id>/desktop/"


def _post(name: str, view: Callable[..., HttpResponse]) -> Any:
    return path(_base + name, methods(POST=view), name=f"v1-desktop-{name.replace('/', '-')}")


def _get(name: str, view: Callable[..., HttpResponse]) -> Any:
    return path(_base + name, methods(GET=view), name=f"v1-desktop-{name.replace('/', '-')}")


urlpatterns = [
    _post("click", _action(inputs.click)),
    _post("move", _action(inputs.move)),
    _post("mouse/down", _action(lambda s, d, b: inputs.mouse(s, d, b, "mousedown"))),
    _post("mouse/up", _action(lambda s, d, b: inputs.mouse(s, d, b, "mouseup"))),
    _post("drag", _action(inputs.drag)),
    _post("scroll", _action(inputs.scroll)),
    _post("type", _action(inputs.type_text)),
    _post("key", _action(inputs.key)),
    _post("hotkey", _action(inputs.hotkey)),
    _post("press", _action(inputs.press)),
    _post("launch", launch_app),
    _post("open", open_target),
    _post("screenshot", screenshot),
    _post("screenshot/region", screenshot_region),
    _post("screenshot/compressed", screenshot_compressed),
    _get("screen_size", screen_size),
    _get("cursor", cursor),
    _get("display", display),
    _get("capabilities", capabilities),
    _get("windows", window_list),
    _get("window/current", window_current),
    path(
        _base + "window/<str:window_id>/title",
        methods(GET=window_title),
        name="v1-desktop-window-title",
    ),
    path(
        _base + "clipboard",
        methods(GET=clipboard_get, PUT=clipboard_set),
        name="v1-desktop-clipboard",
    ),
    _get("stream", stream_info),
    _post("stream/start", stream_start),
    _post("stream/stop", stream_stop),
    _get("stream/auth-key", stream_auth_key),
    _get("recording", recording_list),
    _post("recording/start", recording_start),
    _post("recording/stop", recording_stop),
    path(
        _base + "recording/<str:recording_id>",
        methods(GET=recording_get, DELETE=recording_delete),
        name="v1-desktop-recording",
    ),
    path(
        _base + "recording/<str:recording_id>/download",
        methods(GET=recording_download),
        name="v1-desktop-recording-download",
    ),
    path(_base + "viewer", viewer.viewer, name="v1-desktop-viewer"),
    path("desktop/viewer-assets/<path:asset>", viewer.viewer_asset, name="v1-desktop-assets"),
]
