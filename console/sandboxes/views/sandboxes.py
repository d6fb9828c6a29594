"""Sandbox pages: list with filters, "New sandbox", detail with live state, and the
state actions (pause, resume, kill, extend timeout, snapshots).

Every change goes through console/sandboxes/service.py, the domain layer /v1 uses too; an
ApiError from it becomes a message. Nothing polls: the page's live socket
(console/live_ws.py) fires `sandbox-changed` when a lifecycle event about the
sandbox is recorded, and each fragment (state, snapshots, events, processes,
files) re-fetches itself once then.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from console.access import TeamRequest, team_member_required
from console.actor import Actor
from console.errors import DomainError
from console.htmx import is_fragment_request, render_confirm, render_page
from console.models import LIVE_STATUSES, Role, Sandbox, SandboxStatus, Snapshot
from console.paging import Keyset, console_page
from console.sandboxes import service as sandboxes
from console.sandboxes.forms import SandboxFilterForm, SandboxForm, TimeoutForm
from console.sandboxes.views.context import (
    detail_context,
    event_context,
    snapshot_context,
    state_context,
)

LIST = "console/sandboxes/list.html"
DETAIL = "console/sandboxes/detail.html"
FORM = "console/sandboxes/form.html"
PAGE_SIZE = 20
LIST_KEYSET = Keyset("sandbox", "created_at")


def project_sandbox(request: TeamRequest, sandbox_id: str) -> Sandbox:
    return get_object_or_404(
        Sandbox.objects.select_related("pause_snapshot", "project").visible(),
        project=request.project,
        public_id=sandbox_id,
    )


def detail_url(request: TeamRequest, sandbox: Sandbox, anchor: str = "") -> str:
    """The sandbox page, where the no-JavaScript path of every action lands."""
    kwargs = {"team_slug": request.team.slug, "project_slug": request.project.slug}
    url = reverse("sandbox-detail", kwargs={**kwargs, "sandbox_id": sandbox.public_id})
    return url + anchor


def _attempt(request: TeamRequest, action, done: str) -> Any:
    """Run a domain action; its DomainError becomes an error message instead of a 500."""
    try:
        result = action()
    except DomainError as error:
        messages.error(request, error.message)
        return None
    messages.success(request, done)
    return result


@require_GET
@team_member_required(Role.VIEWER)
def sandbox_list(request: TeamRequest) -> HttpResponse:
    filters = SandboxFilterForm(request.GET)
    rows = Sandbox.objects.filter(project=request.project).visible()
    if filters.is_valid():
        data = filters.cleaned_data
        if data["state"] == "":
            # "Not destroyed" as a list of states: the (project, status) index serves it.
            rows = rows.filter(status__in=[*LIVE_STATUSES, SandboxStatus.ERROR])
        elif data["state"] != "all":
            rows = rows.filter(status=data["state"])
        if data["template"]:
            rows = rows.filter(template=data["template"].strip())
        for key, value in data["metadata"].items():
            rows = rows.filter(**{f"metadata__{key}": value})
    else:
        rows = rows.none()
    page, query = console_page(request, rows, LIST_KEYSET, size=PAGE_SIZE)
    context = {
        "filters": filters,
        "page": page,
        "query": query,
        "filtered": any(request.GET.get(k) for k in ("state", "template", "metadata")),
        "can_act": request.membership.has_role(Role.MEMBER),
    }
    return render_page(request, LIST, context, partial="sandbox-table")


@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def sandbox_create(request: TeamRequest) -> HttpResponse:
    form = SandboxForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            sandbox, _token = sandboxes.create_sandbox(
                request.project,
                actor=Actor.of(request),
                template=data["template"].strip(),
                envs=data["envs"],
                metadata=data["metadata"],
                timeout_ms=data["timeout"] * 1000,
                timeout_action=data["on_timeout"],
                auto_resume=data["auto_resume"],
            )
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"Sandbox {sandbox.public_id} is running.")
            url = detail_url(request, sandbox)
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    # Validation errors re-render the form with 200: htmx 2 does not swap 4xx answers.
    return render_page(request, FORM, {"form": form}, partial="sandbox-form")


@require_GET
@team_member_required(Role.VIEWER)
def sandbox_detail(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    return render(request, DETAIL, detail_context(request, sandbox, path=request.GET.get("path")))


@require_GET
@team_member_required(Role.VIEWER)
def sandbox_state(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    """The state fragment, fetched when the page's live socket says the sandbox changed."""
    sandbox = project_sandbox(request, sandbox_id)
    if not is_fragment_request(request):
        return redirect(detail_url(request, sandbox))
    return render_page(request, DETAIL, state_context(request, sandbox), partial="sandbox-state")


def _after_action(request: TeamRequest, sandbox: Sandbox) -> HttpResponse:
    """htmx gets the fresh state fragment (and the page refreshes its other parts)."""
    if not is_fragment_request(request):
        return redirect(detail_url(request, sandbox))
    sandbox.refresh_from_db()
    response = render_page(
        request, DETAIL, state_context(request, sandbox), partial="sandbox-state"
    )
    return trigger_client_event(response, "sandbox-changed")


def _change_state(request: TeamRequest, sandbox: Sandbox, change, done: str) -> HttpResponse:
    """Pause, resume or kill: `change(sandbox, actor=...)` from the domain layer."""
    _attempt(
        request,
        lambda: change(sandbox, actor=Actor.of(request)),
        f"Sandbox {sandbox.public_id} {done}.",
    )
    return _after_action(request, sandbox)


@require_POST
@team_member_required(Role.MEMBER)
def sandbox_pause(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    return _change_state(request, sandbox, sandboxes.pause_sandbox, "paused")


@require_POST
@team_member_required(Role.MEMBER)
def sandbox_resume(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    return _change_state(request, sandbox, sandboxes.resume_existing, "resumed")


@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def sandbox_delete(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Kill sandbox {sandbox.public_id}?",
            body="Every process ends and the workspace is deleted. Snapshots stay.",
            cancel=detail_url(request, sandbox),
            button="Kill sandbox",
        )
    return _change_state(request, sandbox, sandboxes.destroy_sandbox, "killed")


@require_POST
@team_member_required(Role.MEMBER)
def sandbox_timeout(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    form = TimeoutForm(request.POST)
    if form.is_valid():
        _attempt(
            request,
            lambda: sandboxes.set_timeout(
                sandbox, form.cleaned_data["timeout"] * 1000, actor=Actor.of(request)
            ),
            f"Timeout set to {form.cleaned_data['timeout']} s from now.",
        )
    else:
        messages.error(request, "; ".join(str(e) for errs in form.errors.values() for e in errs))
    return _after_action(request, sandbox)


@require_GET
@team_member_required(Role.VIEWER)
def sandbox_metrics(request: TeamRequest, sandbox_id: str) -> JsonResponse:
    """One metrics sample for the chart; `sample` is null when the sandbox cannot run."""
    sandbox = project_sandbox(request, sandbox_id)
    sample = None
    if sandbox.status == SandboxStatus.RUNNING:
        try:
            sample = sandboxes.metrics_to_dict(sandbox)
        except DomainError:
            sample = None
    return JsonResponse({"status": sandbox.status, "sample": sample})


@require_GET
@team_member_required(Role.VIEWER)
def sandbox_events(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    context = {**state_context(request, sandbox), **event_context(request, sandbox)}
    return render_page(request, DETAIL, context, partial="event-list")


@require_GET
@team_member_required(Role.VIEWER)
def snapshot_list(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    return _snapshots(request, sandbox)


def _snapshots(request: TeamRequest, sandbox: Sandbox) -> HttpResponse:
    context = {**state_context(request, sandbox), **snapshot_context(request, sandbox)}
    return render_page(request, DETAIL, context, partial="snapshot-table")


@require_POST
@team_member_required(Role.MEMBER)
def snapshot_create(request: TeamRequest, sandbox_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    _attempt(
        request,
        lambda: sandboxes.snapshot_sandbox(sandbox, actor=Actor.of(request)),
        "Snapshot created.",
    )
    if not is_fragment_request(request):
        return redirect(detail_url(request, sandbox))
    return _snapshots(request, sandbox)


@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def snapshot_delete(request: TeamRequest, sandbox_id: str, snapshot_id: str) -> HttpResponse:
    sandbox = project_sandbox(request, sandbox_id)
    snapshot = get_object_or_404(
        Snapshot,
        project=request.project,
        sandbox_public_id=sandbox.public_id,
        public_id=snapshot_id,
    )
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Delete snapshot {snapshot.public_id}?",
            body="Its archive is removed; nothing can be restored from it afterwards.",
            cancel=detail_url(request, sandbox),
            button="Delete snapshot",
        )
    _attempt(
        request,
        lambda: sandboxes.delete_snapshot(snapshot),
        f"Snapshot {snapshot.public_id} deleted.",
    )
    if not is_fragment_request(request):
        return redirect(detail_url(request, sandbox))
    return _snapshots(request, sandbox)


P = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/"
S = P + "<str:sandbox_id>/"
urlpatterns = [
    path(P, sandbox_list, name="sandbox-list"),
    path(P + "new/", sandbox_create, name="sandbox-create"),
    path(S, sandbox_detail, name="sandbox-detail"),
    path(S + "state/", sandbox_state, name="sandbox-state"),
    path(S + "pause/", sandbox_pause, name="sandbox-pause"),
    path(S + "resume/", sandbox_resume, name="sandbox-resume"),
    path(S + "kill/", sandbox_delete, name="sandbox-delete"),
    path(S + "timeout/", sandbox_timeout, name="sandbox-timeout"),
    path(S + "metrics/", sandbox_metrics, name="sandbox-metrics"),
    path(S + "events/", sandbox_events, name="sandbox-events"),
    path(S + "snapshots/", snapshot_list, name="snapshot-list"),
    path(S + "snapshots/new/", snapshot_create, name="snapshot-create"),
    path(S + "snapshots/<str:snapshot_id>/delete/", snapshot_delete, name="snapshot-delete"),
]
