"""/v1/sandboxes/{id}/code/...: the code interpreter's routes (docs/code-interpreter.md).

Sync views (Django runs each in its own thread under ASGI); `execute` answers a
server-sent event stream whose events come from a thread following the kernel. Every
lookup goes through the key's project's sandbox, so another project's contexts, runs and
artifacts answer 404.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.urls import path
from django.utils import timezone

from console.api.auth import READ, WRITE, api_key_required, methods, query_int
from console.api.errors import ApiError
from console.code_interpreter import artifacts, contexts, executions, kernels, runs
from console.errors import DomainError
from console.models import CodeArtifact, CodeContext, CodeRun, Sandbox
from console.output_stream import OutputStream
from console.paging import Keyset, paginate
from console.sandboxes import service as sandboxes

RUNS_KEYSET = Keyset("code_runs", "created_at")
ARTIFACTS_KEYSET = Keyset("code_artifacts", "created_at")
DEFAULT_PAGE = 50
MAX_PAGE = 200


def _sandbox(request: HttpRequest, sandbox_id: str, *, running: bool = False) -> Sandbox:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)  # type: ignore[attr-defined]
    if running:
        sandboxes.require_running(sandbox)
    return sandbox


# --- execute ---------------------------------------------------------------------------


@api_key_required(WRITE)
def execute(request: HttpRequest, sandbox_id: str) -> HttpResponseBase:
    sandbox = _sandbox(request, sandbox_id, running=True)
    run = executions.prepare(sandbox, request.json, background=False)  # type: ignore[attr-defined]
    try:
        context, client = executions.open_kernel(run)
    except DomainError as exc:
        executions.fail(run, f"{exc.code}: {exc.message}")
        raise
    stream: OutputStream[dict[str, Any] | None] = OutputStream(
        lambda stop: executions.execute(run, context, client, stop), name=f"code-{run.public_id}"
    )
    response = StreamingHttpResponse(sse_body(stream), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    response["X-Code-Run-Id"] = run.public_id
    return response


async def sse_body(stream: OutputStream[dict[str, Any] | None]) -> AsyncIterator[str]:
    async with stream:
        async for event in stream:
            if event is None:
                yield ": keepalive\n\n"
            else:
                yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


# --- contexts --------------------------------------------------------------------------


@api_key_required(WRITE)
def create_context(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    body = request.json  # type: ignore[attr-defined]
    unknown = sorted(set(body) - {"cwd", "language"})
    if unknown:
        raise ApiError("invalid_request", f"unknown field(s): {', '.join(unknown)}")
    sandbox = _sandbox(request, sandbox_id, running=True)
    context = contexts.create(sandbox, cwd=body.get("cwd"), language_name=body.get("language"))
    return JsonResponse(contexts.to_dict(context), status=201)


@api_key_required(READ)
def list_contexts(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox = _sandbox(request, sandbox_id)
    return JsonResponse([contexts.to_dict(c) for c in contexts.listed(sandbox)], safe=False)


def _context(request: HttpRequest, sandbox_id: str, context_id: str) -> CodeContext:
    return contexts.get(_sandbox(request, sandbox_id), context_id)


@api_key_required(WRITE)
def delete_context(request: HttpRequest, sandbox_id: str, context_id: str) -> HttpResponse:
    contexts.remove(_context(request, sandbox_id, context_id))
    return HttpResponse(status=204)


@api_key_required(WRITE)
def restart_context(request: HttpRequest, sandbox_id: str, context_id: str) -> HttpResponse:
    contexts.restart(_context(request, sandbox_id, context_id))
    return HttpResponse(status=204)


@api_key_required(WRITE)
def interrupt_context(request: HttpRequest, sandbox_id: str, context_id: str) -> HttpResponse:
    context = _context(request, sandbox_id, context_id)
    sandboxes.require_running(context.sandbox)
    kernels.interrupt(context)
    return HttpResponse(status=204)


# --- runs ------------------------------------------------------------------------------


@api_key_required(WRITE)
def create_run(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox = _sandbox(request, sandbox_id, running=True)
    run = runs.start_background(sandbox, request.json)  # type: ignore[attr-defined]
    return JsonResponse(runs.to_dict(run), status=201)


def _page(request: HttpRequest, rows: Any, keyset: Keyset) -> Any:
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    return paginate(rows, keyset, limit=limit, after=request.GET.get("cursor") or None)


@api_key_required(READ)
def list_runs(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox = _sandbox(request, sandbox_id)
    rows = CodeRun.objects.select_related("sandbox").filter(sandbox=sandbox)
    status = request.GET.get("status")
    if status:
        if status not in runs.STATUSES:
            raise ApiError("invalid_request", f"status must be one of {', '.join(runs.STATUSES)}")
        rows = rows.filter(status=status)
    if request.GET.get("context_id"):
        rows = rows.filter(context_public_id=request.GET["context_id"])
    page = _page(request, rows, RUNS_KEYSET)
    return JsonResponse(
        {"items": [runs.to_dict(r) for r in page.items], "next_cursor": page.next_cursor}
    )


@api_key_required(READ)
def get_run(request: HttpRequest, sandbox_id: str, run_id: str) -> JsonResponse:
    return JsonResponse(runs.to_dict(runs.get(_sandbox(request, sandbox_id), run_id)))


@api_key_required(WRITE)
def cancel_run(request: HttpRequest, sandbox_id: str, run_id: str) -> JsonResponse:
    run = runs.get(_sandbox(request, sandbox_id), run_id)
    return JsonResponse(runs.to_dict(runs.cancel(run)))


# --- artifacts -------------------------------------------------------------------------


@api_key_required(READ)
def list_artifacts(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox = _sandbox(request, sandbox_id)
    rows = CodeArtifact.objects.select_related("sandbox").filter(
        sandbox=sandbox, expires_at__gt=timezone.now()
    )
    if request.GET.get("context_id"):
        rows = rows.filter(context_public_id=request.GET["context_id"])
    if request.GET.get("execution_count"):
        rows = rows.filter(execution_count=query_int(request, "execution_count", 0, 0, 2**31))
    if request.GET.get("kind"):
        rows = rows.filter(kind=request.GET["kind"])
    page = _page(request, rows, ARTIFACTS_KEYSET)
    return JsonResponse(
        {"items": [artifacts.to_dict(a) for a in page.items], "next_cursor": page.next_cursor}
    )


def _artifact(request: HttpRequest, sandbox_id: str, artifact_id: str) -> CodeArtifact:
    return artifacts.get(_sandbox(request, sandbox_id).pk, artifact_id)


@api_key_required(READ)
def get_artifact(request: HttpRequest, sandbox_id: str, artifact_id: str) -> JsonResponse:
    return JsonResponse(artifacts.to_dict(_artifact(request, sandbox_id, artifact_id)))


@api_key_required(WRITE)
def delete_artifact(request: HttpRequest, sandbox_id: str, artifact_id: str) -> HttpResponse:
    artifacts.delete(_artifact(request, sandbox_id, artifact_id))
    return HttpResponse(status=204)


@api_key_required(READ)
def download_artifact(request: HttpRequest, sandbox_id: str, artifact_id: str) -> HttpResponseBase:
    artifact = _artifact(request, sandbox_id, artifact_id)
    return FileResponse(
        open(artifacts.stored_path(artifact), "rb"),  # noqa: SIM115 (FileResponse closes it)
        as_attachment=True,
        filename=artifact.name,
        content_type=artifact.mime_type,
    )


@api_key_required(READ)
def preview_artifact(request: HttpRequest, sandbox_id: str, artifact_id: str) -> HttpResponse:
    data, content_type = artifacts.preview(_artifact(request, sandbox_id, artifact_id))
    response = HttpResponse(data, content_type=content_type)
    # Shown by a browser: never as a page of our origin (an SVG or HTML could script it).
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


_base = "sandboxes/<str:sandbox_id>/code/"
urlpatterns = [
    path(_base + "execute", methods(POST=execute), name="v1-code-execute"),
    path(
        _base + "contexts",
        methods(GET=list_contexts, POST=create_context),
        name="v1-code-contexts",
    ),
    path(
        _base + "contexts/<str:context_id>",
        methods(DELETE=delete_context),
        name="v1-code-context",
    ),
    path(
        _base + "contexts/<str:context_id>/restart",
        methods(POST=restart_context),
        name="v1-code-context-restart",
    ),
    path(
        _base + "contexts/<str:context_id>/interrupt",
        methods(POST=interrupt_context),
        name="v1-code-context-interrupt",
    ),
    path(_base + "runs", methods(GET=list_runs, POST=create_run), name="v1-code-runs"),
    path(_base + "runs/<str:run_id>", methods(GET=get_run), name="v1-code-run"),
    path(_base + "runs/<str:run_id>/cancel", methods(POST=cancel_run), name="v1-code-run-cancel"),
    path(_base + "artifacts", methods(GET=list_artifacts), name="v1-code-artifacts"),
    path(
        _base + "artifacts/<str:artifact_id>",
        methods(GET=get_artifact, DELETE=delete_artifact),
        name="v1-code-artifact",
    ),
    path(
        _base + "artifacts/<str:artifact_id>/download",
        methods(GET=download_artifact),
        name="v1-code-artifact-download",
    ),
    path(
        _base + "artifacts/<str:artifact_id>/preview",
        methods(GET=preview_artifact),
        name="v1-code-artifact-preview",
    ),
]
