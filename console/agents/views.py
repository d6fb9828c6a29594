"""Agent deployment pages: the list (with the CLI commands to deploy when empty), a
deployment (versions, runs, services with stop/restart), and a run with its live log.

The run log is pushed to the browser as server-sent events (`run_log_stream`): the
server tails new rows and sends each as it lands; the page renders what exists first,
so it is complete without JavaScript.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from console.access import TeamRequest, team_member_required
from console.agents import deployments, outputs, services
from console.agents.models import DeploymentStatus
from console.errors import DomainError
from console.htmx import render_page
from console.models import AgentDeployment, AgentLogEvent, AgentRun, AgentService, Role

LIST = "console/agents/list.html"
DETAIL = "console/agents/detail.html"
RUN = "console/agents/run.html"
PAGE_SIZE = 20
LOG_PAGE = 2000
STREAM_POLL_SECONDS = 0.25
STREAM_MAX_SECONDS = 3600


def _deployment(request: TeamRequest, deployment_id: str) -> AgentDeployment:
    return get_object_or_404(
        AgentDeployment.objects.select_related("active_version").exclude(
            status=DeploymentStatus.DELETED
        ),
        project=request.project,
        public_id=deployment_id,
    )


def _run(request: TeamRequest, deployment: AgentDeployment, run_id: str) -> AgentRun:
    return get_object_or_404(
        AgentRun.objects.select_related("version", "deployment"),
        deployment=deployment,
        public_id=run_id,
    )


def _detail_url(request: TeamRequest, deployment: AgentDeployment) -> str:
    return reverse(
        "agent-detail",
        kwargs={
            "team_slug": request.team.slug,
            "project_slug": request.project.slug,
            "deployment_id": deployment.public_id,
        },
    )


@require_GET
@team_member_required(Role.VIEWER)
def agent_list(request: TeamRequest) -> HttpResponse:
    rows = (
        AgentDeployment.objects.filter(project=request.project)
        .exclude(status=DeploymentStatus.DELETED)
        .select_related("active_version")
    )
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "site_url": request.build_absolute_uri("/").rstrip("/")}
    return render_page(request, LIST, context)


@require_GET
@team_member_required(Role.VIEWER)
def agent_detail(request: TeamRequest, deployment_id: str) -> HttpResponse:
    return _detail_page(request, _deployment(request, deployment_id))


def _detail_page(request: TeamRequest, deployment: AgentDeployment) -> HttpResponse:
    versions = list(deployment.versions.select_related("artifact")[:20])
    runs = list(deployment.runs.select_related("version")[:30])
    service_rows = list(deployment.services.select_related("version", "grant__sandbox")[:10])
    context = {
        "deployment": deployment,
        "versions": versions,
        "runs": runs,
        "services": [(s, services.public_url(s)) for s in service_rows],
        "service_log": (
            list(AgentLogEvent.objects.filter(service=service_rows[0]).order_by("-id")[:50])[::-1]
            if service_rows
            else []
        ),
        "can_act": request.membership.has_role(Role.MEMBER),
    }
    return render_page(request, DETAIL, context, partial="agent-services")


@require_GET
@team_member_required(Role.VIEWER)
def agent_run(request: TeamRequest, deployment_id: str, run_id: str) -> HttpResponse:
    deployment = _deployment(request, deployment_id)
    run = _run(request, deployment, run_id)
    events = list(AgentLogEvent.objects.filter(run=run).order_by("id")[:LOG_PAGE])
    context = {
        "deployment": deployment,
        "run": run,
        "events": events,
        "last_event_id": events[-1].pk if events else 0,
        "input_json": json.dumps(run.input or {}, indent=2),
        "outputs": list(enumerate(run.outputs or [])),
        "duration": _duration(run),
    }
    return render_page(request, RUN, context)


def _duration(run: AgentRun) -> float | None:
    if run.started_at is None:
        return None
    end = run.completed_at
    if end is None:
        from django.utils import timezone

        end = timezone.now()
    return round((end - run.started_at).total_seconds(), 1)


@require_GET
@team_member_required(Role.VIEWER)
def run_log_stream(request: TeamRequest, deployment_id: str, run_id: str) -> HttpResponseBase:
    """Server-sent events: every log event after `after` (or Last-Event-ID), as it lands,
    then an `end` event once the run is over and nothing is left."""
    deployment = _deployment(request, deployment_id)
    run = _run(request, deployment, run_id)
    raw_after = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        after = int(raw_after)
    except ValueError:
        after = 0
    response = StreamingHttpResponse(_events(run.pk, after), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


def _new_events(run_pk: int, after: int) -> tuple[list[dict[str, Any]], bool, dict[str, Any]]:
    rows = [
        dict(row)
        for row in AgentLogEvent.objects.filter(run_id=run_pk, id__gt=after)
        .order_by("id")
        .values("id", "level", "source", "event_type", "message", "created_at")[:500]
    ]
    run = AgentRun.objects.filter(pk=run_pk).values("status", "failure_reason", "exit_code").first()
    terminal = run is None or run["status"] in ("succeeded", "failed", "cancelled", "timed_out")
    return rows, terminal, dict(run) if run else {}


async def _events(run_pk: int, after: int) -> AsyncIterator[str]:
    fetch = sync_to_async(_new_events, thread_sensitive=False)
    deadline = time.monotonic() + STREAM_MAX_SECONDS
    yield "retry: 2000\n\n"
    while time.monotonic() < deadline:
        rows, terminal, run = await fetch(run_pk, after)
        for row in rows:
            after = row["id"]
            row["created_at"] = row["created_at"].isoformat()
            yield f"id: {after}\nevent: log\ndata: {json.dumps(row)}\n\n"
        if terminal and not rows:
            yield f"event: end\ndata: {json.dumps(run)}\n\n"
            return
        if not rows:
            await asyncio.sleep(STREAM_POLL_SECONDS)


@require_GET
@team_member_required(Role.VIEWER)
def run_output(
    request: TeamRequest, deployment_id: str, run_id: str, index: int
) -> HttpResponseBase:
    run = _run(request, _deployment(request, deployment_id), run_id)
    found = outputs.stored_file(run, index)
    if found is None:
        raise Http404("no kept output with this number")
    path_, entry = found
    return FileResponse(
        path_.open("rb"), as_attachment=True, filename=entry.get("name") or "output"
    )


def _service(request: TeamRequest, deployment_id: str, service_id: str) -> AgentService:
    deployment = _deployment(request, deployment_id)
    return get_object_or_404(
        AgentService.objects.select_related("deployment", "version", "grant__sandbox"),
        deployment=deployment,
        public_id=service_id,
    )


def _after_service_action(request: TeamRequest, service: AgentService) -> HttpResponse:
    if request.htmx:
        return _detail_page(request, service.deployment)
    return redirect(_detail_url(request, service.deployment))


@require_POST
@team_member_required(Role.MEMBER)
def service_stop(request: TeamRequest, deployment_id: str, service_id: str) -> HttpResponse:
    service = _service(request, deployment_id, service_id)
    services.stop(service, reason=f"stopped in the console by {request.user}", retain_sandbox=False)
    messages.success(request, f"Service {service.public_id} stopped.")
    return _after_service_action(request, service)


@require_POST
@team_member_required(Role.MEMBER)
def service_restart(request: TeamRequest, deployment_id: str, service_id: str) -> HttpResponse:
    service = _service(request, deployment_id, service_id)
    try:
        deployments.restart_service(service, {"reason": "restarted in the console"})
    except DomainError as error:
        messages.error(
            request,
            f"{error.message}. Env values are never stored: restart with "
            f"`nullspace agent restart {service.deployment.name} --env NAME=value`.",
        )
    else:
        messages.success(request, f"Service {service.public_id} is restarting.")
    return _after_service_action(request, service)


P = "t/<slug:team_slug>/p/<slug:project_slug>/agents/"
D = P + "<str:deployment_id>/"
R = D + "runs/<str:run_id>/"
urlpatterns = [
    path(P, agent_list, name="agent-list"),
    path(D, agent_detail, name="agent-detail"),
    path(R, agent_run, name="agent-run"),
    path(R + "log/", run_log_stream, name="agent-run-log"),
    path(R + "outputs/<int:index>/", run_output, name="agent-run-output"),
    path(D + "services/<str:service_id>/stop/", service_stop, name="agent-service-stop"),
    path(D + "services/<str:service_id>/restart/", service_restart, name="agent-service-restart"),
]
