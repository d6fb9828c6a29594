"""Processes of a sandbox: the table (with kill) and the exec box's no-JavaScript path.

With JavaScript the exec box streams over the console WebSocket (console/sandboxes/consumers.py);
without it, the form POSTs here and the command runs to completion (bounded by
EXEC_TIMEOUT_SECS) before the page shows its output.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from console.access import TeamRequest, team_member_required
from console.errors import DomainError
from console.htmx import is_fragment_request, render_page
from console.models import Role, Sandbox
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes import service as sandboxes
from console.sandboxes.forms import ExecForm
from console.sandboxes.views.context import detail_context, process_context, state_context
from console.sandboxes.views.sandboxes import DETAIL, detail_url, project_sandbox

EXEC_TIMEOUT_SECS = 30


def _processes(request: TeamRequest, sandbox: Sandbox) -> HttpResponse:
    if not is_fragment_request(request):
        return redirect(detail_url(request, sandbox, "#processes"))
    context = {**state_context(request, sandbox), **process_context(sandbox)}
    return render_page(request, DETAIL, context, partial="process-table")


@require_GET
@team_member_required(Role.VIEWER)
def process_list(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    return _processes(request, project_sandbox(request, sandbox_id))


@require_POST
@team_member_required(Role.MEMBER)
def process_kill(request: TeamRequest, sandbox_id: str, pid: int) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    try:
        sandboxes.require_running(sandbox)
        get_driver().kill_process(sandbox.runtime_id, pid)
    except (DomainError, RuntimeError_) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    else:
        messages.success(request, f"Process {pid} killed.")
    return _processes(request, sandbox)


@require_POST
@team_member_required(Role.MEMBER)
def sandbox_exec(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    form = ExecForm(request.POST)
    result = error = None
    if form.is_valid():
        body = {"command": form.cleaned_data["command"], "shell": True}
        try:
            request_ = sandboxes.exec_request({**body, "timeout_secs": EXEC_TIMEOUT_SECS})
            result = sandboxes.run_command(sandbox, request_)
        except DomainError as exc:
            error = exc.message
    context = detail_context(request, sandbox, exec_form=form, exec_result=result, exec_error=error)
    if is_fragment_request(request):
        return render_page(request, DETAIL, context, partial="exec-box")
    return render(request, DETAIL, context)


S = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/"
urlpatterns = [
    path(S + "processes/", process_list, name="sandbox-processes"),
    path(S + "processes/<int:pid>/kill/", process_kill, name="process-kill"),
    path(S + "exec/", sandbox_exec, name="sandbox-exec"),
]
