"""Warm pools in the console: the project's pools with their ready and warming counts
(pushed live, console/warm_pools/live.py), a create form, and enable, disable, drain,
reconcile, scale and delete. Every change goes through console/warm_pools/pools.py, as
/v1 does; its DomainError becomes a message. Each form works without JavaScript (a POST
and a redirect) and with htmx (the table fragment comes back)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.access import team_member_required
from console.actor import Actor
from console.errors import DomainError
from console.htmx import is_fragment_request, render_confirm, render_page
from console.models import (
    CheckoutMode,
    Membership,
    Project,
    Role,
    Team,
    WarmPool,
    WarmPoolState,
)
from console.warm_pools import pools, validation
from console.warm_pools.shapes import inventories, public_status, status_counts

LIST = "console/warm_pools/list.html"


class ConsoleRequest(HttpRequest):
    """What team_member_required (console/access.py) attaches to a request."""

    team: Team
    project: Project
    membership: Membership


ACTIONS = {
    "enable": (pools.enable_pool, "enabled"),
    "disable": (pools.disable_pool, "disabled"),
    "drain": (pools.drain_pool, "draining"),
    "reconcile": (pools.reconcile_pool, "asked to reconcile"),
}


class PoolForm(forms.Form):
    name = forms.CharField(max_length=validation.MAX_NAME)
    template = forms.CharField(max_length=200, initial="base")
    min_ready = forms.IntegerField(min_value=0, max_value=validation.MAX_READY, initial=1)
    max_ready = forms.IntegerField(min_value=0, max_value=validation.MAX_READY, initial=2)
    vcpus = forms.IntegerField(
        min_value=1, max_value=settings.SANDBOX_MAX_VCPUS, initial=2, label="vCPUs"
    )
    memory_mb = forms.IntegerField(
        min_value=64, max_value=settings.SANDBOX_MAX_MEMORY_MB, initial=512, label="Memory (MB)"
    )
    checkout_policy = forms.ChoiceField(choices=CheckoutMode.choices, initial="prefer")
    # Empty: pinned to the build the template names now; a tag: follow it
    # (docs/warm-pools.md, "Pinned or tracking a tag").
    track_tag = forms.CharField(max_length=100, required=False, label="Follow tag")

    def body(self) -> dict[str, Any]:
        data = self.cleaned_data
        tracking = (
            {"version_policy": "track_tag", "track_tag": data["track_tag"].strip()}
            if data.get("track_tag", "").strip()
            else {}
        )
        return tracking | {
            "name": data["name"],
            "template_ref": data["template"],
            "min_ready": data["min_ready"],
            "max_ready": data["max_ready"],
            "resources": {"vcpus": data["vcpus"], "memory_mb": data["memory_mb"]},
            "checkout_policy": data["checkout_policy"],
        }


class ScaleForm(forms.Form):
    min_ready = forms.IntegerField(min_value=0, max_value=validation.MAX_READY)
    max_ready = forms.IntegerField(min_value=0, max_value=validation.MAX_READY)


def _list_url(request: ConsoleRequest) -> str:
    kwargs = {"team_slug": request.team.slug, "project_slug": request.project.slug}
    return reverse("warmpool-list", kwargs=kwargs)


def _pool(request: ConsoleRequest, pool_id: str) -> WarmPool:
    try:
        return pools.get_pool(request.project, pool_id)
    except DomainError:
        raise Http404("No such warm pool") from None


def _context(request: ConsoleRequest, form: PoolForm | None = None) -> dict[str, Any]:
    found = list(
        WarmPool.objects.filter(project=request.project)
        .exclude(state=WarmPoolState.DELETED)
        .select_related("template_build", "previous_template_build")
    )
    counts = inventories(found)
    rows = [
        {
            "pool": pool,
            "counts": status_counts(pool, counts[pool.pk]),
            "status": public_status(pool, counts[pool.pk]),
        }
        for pool in found
    ]
    return {
        "rows": rows,
        "form": form or PoolForm(),
        "can_manage": request.membership.has_role(Role.MEMBER),
        "live_socket": _list_url(request) + "live/ws",
        "list_url": _list_url(request),
    }


def _render(request: ConsoleRequest) -> HttpResponse:
    return render_page(request, LIST, _context(request), partial="pool-table")


def _done(request: ConsoleRequest) -> HttpResponse:
    if not is_fragment_request(request):
        return redirect(_list_url(request))
    return _render(request)


@require_GET
@team_member_required(Role.VIEWER)
def pool_list(request: ConsoleRequest) -> HttpResponse:
    return _render(request)


@require_POST
@team_member_required(Role.MEMBER)
def pool_create(request: ConsoleRequest) -> HttpResponse:
    form = PoolForm(request.POST)
    if form.is_valid():
        try:
            pool = pools.create_pool(request.project, form.body(), actor=Actor.of(request))
        except DomainError as refused:
            form.add_error(None, refused.message)
    if form.errors:
        return render(request, LIST, _context(request, form), status=400)
    messages.success(request, f"Warm pool {pool.name} created; it fills in the background.")
    return redirect(_list_url(request))


@require_POST
@team_member_required(Role.MEMBER)
def pool_action(request: ConsoleRequest, pool_id: str, action: str) -> HttpResponse:
    pool = _pool(request, pool_id)
    if action not in ACTIONS:
        raise Http404("No such action")
    change, said = ACTIONS[action]
    try:
        change(pool, actor=Actor.of(request))
        messages.success(request, f"Warm pool {pool.name} {said}.")
    except DomainError as error:
        messages.error(request, error.message)
    return _done(request)


@require_POST
@team_member_required(Role.MEMBER)
def pool_scale(request: ConsoleRequest, pool_id: str) -> HttpResponse:
    pool = _pool(request, pool_id)
    form = ScaleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "min ready and max ready must be whole numbers from 0 to 20.")
        return _done(request)
    try:
        pools.update_pool(pool, dict(form.cleaned_data), actor=Actor.of(request))
        messages.success(
            request,
            f"Warm pool {pool.name} scaled to {form.cleaned_data['min_ready']}.."
            f"{form.cleaned_data['max_ready']}.",
        )
    except DomainError as error:
        messages.error(request, error.message)
    return _done(request)


@require_http_methods(["GET", "POST"])
@team_member_required(Role.MEMBER)
def pool_delete(request: ConsoleRequest, pool_id: str) -> HttpResponse:
    pool = _pool(request, pool_id)
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Delete warm pool {pool.name}?",
            body="Its ready sandboxes are destroyed; sandboxes already checked out stay.",
            cancel=_list_url(request),
            button="Delete warm pool",
        )
    pools.delete_pool(pool, actor=Actor.of(request))
    messages.success(request, f"Warm pool {pool.name} deleted.")
    return _done(request)


P = "t/<slug:team_slug>/p/<slug:project_slug>/warm-pools/"
urlpatterns = [
    path(P, pool_list, name="warmpool-list"),
    path(P + "new/", pool_create, name="warmpool-create"),
    path(P + "<str:pool_id>/scale/", pool_scale, name="warmpool-scale"),
    path(P + "<str:pool_id>/delete/", pool_delete, name="warmpool-delete"),
    path(
        P + "<str:pool_id>/<slug:action>/",
        pool_action,
        name="warmpool-action",
    ),
]
