"""The sandbox page's code cell: code run in the sandbox's default context.

With JavaScript (static/js/code_cell.js) the cell asks for `text/event-stream` and
shows each event as it arrives, the same events /v1 streams. Without it the form
POSTs, the code runs to completion, and the page shows what it produced.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_POST

from console.access import TeamRequest, team_member_required
from console.code_interpreter import executions
from console.code_interpreter.api import sse_body
from console.errors import DomainError
from console.models import Role
from console.output_stream import OutputStream
from console.sandboxes import service as sandboxes
from console.sandboxes.views.context import detail_context
from console.sandboxes.views.sandboxes import DETAIL, project_sandbox
from console.views.errors import status_for

CELL = "console/code_interpreter/cell.html"
# The no-JavaScript path holds the request until the code ends: keep it short.
PAGE_TIMEOUT_SECS = 60


def _wants_stream(request: HttpRequest) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


@require_POST
@team_member_required(Role.MEMBER)
def code_run(request: TeamRequest, sandbox_id: str) -> HttpResponseBase:
    sandbox = project_sandbox(request, sandbox_id)
    code = request.POST.get("code", "")
    stream = _wants_stream(request)
    try:
        sandboxes.require_running(sandbox)
        body: dict[str, Any] = {"code": code}
        if not stream:
            body["timeout"] = PAGE_TIMEOUT_SECS
        run = executions.prepare(sandbox, body, background=False)
        try:
            context, client = executions.open_kernel(run)
        except DomainError as exc:
            executions.fail(run, f"{exc.code}: {exc.message}")
            raise
    except DomainError as exc:
        if stream:
            return HttpResponse(
                json.dumps({"error": exc.message, "code": exc.code}),
                status=status_for(exc),
                content_type="application/json",
            )
        page = detail_context(request, sandbox, code_error=exc.message, code_source=code)
        return render(request, DETAIL, page, status=status_for(exc))
    if stream:
        events: OutputStream[dict[str, Any] | None] = OutputStream(
            lambda stop: executions.execute(run, context, client, stop),
            name=f"code-{run.public_id}",
        )
        response = StreamingHttpResponse(sse_body(events), content_type="text/event-stream")
        response["Cache-Control"] = "no-store"
        return response
    for _event in executions.execute(run, context, client):
        pass
    run.refresh_from_db()
    page = detail_context(request, sandbox, code_run=run.execution, code_source=code)
    return render(request, DETAIL, page)


S = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/"
urlpatterns = [
    path(S + "code/run/", code_run, name="sandbox-code-run"),
]
