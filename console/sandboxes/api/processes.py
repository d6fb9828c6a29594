"""/v1/sandboxes/{id}/exec and /processes (docs/api.md §2.4).

Blocking exec is a plain sync view: under ASGI Django gives every request its own
thread (ThreadSensitiveContext), so a command running for its whole timeout does not
hold up other requests (tests/console/test_cli_sandboxes.py checks this live).
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods
from console.api.errors import ApiError
from console.runtime import get_driver
from console.sandboxes import service as sandboxes


def _running_sandbox(request: ApiRequest, sandbox_id: str):
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)
    sandboxes.require_running(sandbox)
    return sandbox


@api_key_required(WRITE)
def exec_command(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    body = request.json
    background = bool(body.get("background"))
    exec_request = sandboxes.exec_request(body, background=background)
    sandbox = _running_sandbox(request, sandbox_id)
    if background:
        return JsonResponse({"pid": sandboxes.start_process(sandbox, exec_request)})
    result = sandboxes.run_command(sandbox, exec_request)
    return JsonResponse(
        {
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "pid": result.pid,
            **sandboxes.truncation_fields(result.truncated),
        }
    )


@api_key_required(READ)
def list_processes(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = _running_sandbox(request, sandbox_id)
    found = sandboxes.driver_call(lambda: get_driver().processes(sandbox.runtime_id))
    return JsonResponse([sandboxes.process_to_dict(p) for p in found], safe=False)


@api_key_required(READ)
def process_logs(request: ApiRequest, sandbox_id: str, pid: int) -> JsonResponse:
    sandbox = _running_sandbox(request, sandbox_id)
    logs = sandboxes.read_logs(sandbox, pid)
    return JsonResponse(
        {
            "stdout": logs.stdout,
            "stderr": logs.stderr,
            "output": logs.output,
            "exit_code": logs.exit_code,
            **sandboxes.truncation_fields(logs.truncated),
        }
    )


@api_key_required(WRITE)
def kill_process(request: ApiRequest, sandbox_id: str, pid: int) -> HttpResponse:
    sandbox = _running_sandbox(request, sandbox_id)
    sandboxes.driver_call(lambda: get_driver().kill_process(sandbox.runtime_id, pid))
    return HttpResponse(status=204)


@api_key_required(WRITE)
def process_stdin(request: ApiRequest, sandbox_id: str, pid: int) -> HttpResponse:
    data = request.json.get("data")
    if not isinstance(data, str):
        raise ApiError("invalid_request", "data must be a string")
    sandbox = _running_sandbox(request, sandbox_id)
    sandboxes.driver_call(lambda: get_driver().write_stdin(sandbox.runtime_id, pid, data.encode()))
    return HttpResponse(status=204)


_base = "sandboxes/<str:sandbox_id>/"
urlpatterns = [
    path(_base + "exec", methods(POST=exec_command), name="v1-sandbox-exec"),
    path(_base + "processes", methods(GET=list_processes), name="v1-sandbox-processes"),
    path(
        _base + "processes/<int:pid>/logs",
        methods(GET=process_logs),
        name="v1-sandbox-process-logs",
    ),
    path(
        _base + "processes/<int:pid>/kill",
        methods(POST=kill_process),
        name="v1-sandbox-process-kill",
    ),
    path(
        _base + "processes/<int:pid>/stdin",
        methods(POST=process_stdin),
        name="v1-sandbox-process-stdin",
    ),
]
