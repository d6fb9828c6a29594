"""/v1/sandboxes/{id}/pty...: list, inspect, resize and end PTY sessions (docs/api.md §2.8).

Sessions are started over the WebSocket (`?channel=pty`, console/sandboxes/api/pty_ws.py).
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods
from console.sandboxes import pty as sandbox_pty
from console.sandboxes import service as sandboxes


def _sandbox(request: ApiRequest, sandbox_id: str):
    return sandboxes.get_sandbox(request.project, sandbox_id)


@api_key_required(READ)
def list_sessions(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    found = sandbox_pty.sessions(_sandbox(request, sandbox_id))
    return JsonResponse([sandbox_pty.info_dict(info) for info in found], safe=False)


@api_key_required(READ)
def get_session(request: ApiRequest, sandbox_id: str, session_id: str) -> JsonResponse:
    info = sandbox_pty.find(_sandbox(request, sandbox_id), session_id=session_id)
    return JsonResponse(sandbox_pty.info_dict(info))


@api_key_required(WRITE)
def kill_session(request: ApiRequest, sandbox_id: str, session_id: str) -> HttpResponse:
    sandbox = _sandbox(request, sandbox_id)
    sandbox_pty.kill(sandbox, sandbox_pty.find(sandbox, session_id=session_id))
    return HttpResponse(status=204)


@api_key_required(WRITE)
def resize_session(request: ApiRequest, sandbox_id: str, session_id: str) -> JsonResponse:
    cols, rows = sandbox_pty.size(request.json)
    sandbox = _sandbox(request, sandbox_id)
    info = sandbox_pty.find(sandbox, session_id=session_id)
    return JsonResponse(sandbox_pty.info_dict(sandbox_pty.resize(sandbox, info, cols, rows)))


_base = "sandboxes/<str:sandbox_id>/pty"
urlpatterns = [
    path(_base, methods(GET=list_sessions), name="v1-sandbox-pty-list"),
    path(
        _base + "/<str:session_id>",
        methods(GET=get_session, DELETE=kill_session),
        name="v1-sandbox-pty",
    ),
    path(
        _base + "/<str:session_id>/resize",
        methods(POST=resize_session),
        name="v1-sandbox-pty-resize",
    ),
]
