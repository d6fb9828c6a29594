"""Project pages: create, overview, rename, delete."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from console.access import TeamRequest, team_member_required
from console.accounts.forms import ProjectForm
from console.accounts.users import create_project
from console.actor import Actor
from console.audit.service import record
from console.htmx import (
    is_fragment_request,
    redirect_or_client_redirect,
    render_confirm,
    render_page,
)
from console.models import Role


@team_member_required(Role.ADMIN)
@require_POST
def project_create(request: TeamRequest) -> HttpResponse:
    form = ProjectForm(request.POST)
    if not form.is_valid():
        context = {"projects": request.team.projects.order_by("name"), "project_form": form}
        return render_page(request, "console/teams/detail.html", context, partial="project-list")
    project = create_project(request.team, form.cleaned_data["name"])
    record(
        "project.create",
        team=request.team,
        actor=Actor.of(request),
        target_type="project",
        target_id=project.public_id,
        name=project.name,
    )
    messages.success(request, f"Project {project.name} created.")
    url = reverse(
        "project-detail", kwargs={"team_slug": request.team.slug, "project_slug": project.slug}
    )
    return redirect_or_client_redirect(request, url)


@team_member_required(Role.VIEWER)
def project_detail(request: TeamRequest) -> HttpResponse:
    project = request.project
    context = {
        "api_url": settings.SITE_URL,
        # Counted by the database on the (project, expires_at) index of unrevoked keys.
        "active_keys": project.api_keys.filter(revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .count(),
        "member_count": request.team.memberships.count(),
    }
    return render(request, "console/projects/detail.html", context)


@team_member_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def project_update(request: TeamRequest) -> HttpResponse:
    project = request.project
    form = ProjectForm(request.POST or None, initial={"name": project.name})
    if request.method == "POST" and form.is_valid():
        old_name, project.name = project.name, form.cleaned_data["name"]
        project.save(update_fields=["name", "updated_at"])
        record(
            "project.rename",
            team=request.team,
            actor=Actor.of(request),
            target_type="project",
            target_id=project.public_id,
            old_name=old_name,
            new_name=project.name,
        )
        messages.success(request, "Project renamed.")
        if not is_fragment_request(request):
            return redirect(
                "project-update", team_slug=request.team.slug, project_slug=project.slug
            )
    return render_page(
        request, "console/projects/form.html", {"form": form}, partial="project-form"
    )


@team_member_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def project_delete(request: TeamRequest) -> HttpResponse:
    project, team = request.project, request.team
    kwargs = {"team_slug": team.slug, "project_slug": project.slug}
    live = project.sandboxes.live().count()
    if request.method == "POST" and live:
        # Deleting the rows would orphan running sandboxes in the runtime.
        messages.error(request, f"Destroy this project's {live} live sandbox(es) first.")
        return redirect_or_client_redirect(request, reverse("project-update", kwargs=kwargs))
    if request.method == "POST":
        record(
            "project.delete",
            team=team,
            actor=Actor.of(request),
            target_type="project",
            target_id=project.public_id,
            name=project.name,
        )
        project.delete()
        messages.success(request, f"Project {project.name} deleted.")
        return redirect_or_client_redirect(
            request, reverse("team-detail", kwargs={"team_slug": team.slug})
        )
    return render_confirm(
        request,
        title=f"Delete project {project.name}?",
        body="Its API keys stop working at once, and its sandbox records and preview links are "
        "deleted. This cannot be undone.",
        cancel=reverse("project-update", kwargs=kwargs),
        button="Delete project",
        blocked=f"This project has {live} live sandbox(es); destroy them first." if live else "",
    )


P = "t/<slug:team_slug>/p/<slug:project_slug>/"
urlpatterns = [
    path("t/<slug:team_slug>/projects/new/", project_create, name="project-create"),
    path(P, project_detail, name="project-detail"),
    path(P + "settings/", project_update, name="project-update"),
    path(P + "delete/", project_delete, name="project-delete"),
]
