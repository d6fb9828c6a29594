"""Team pages: create, overview (its projects), rename, delete."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods

from console.access import TeamRequest, team_member_required
from console.accounts.forms import ProjectForm, TeamForm
from console.accounts.users import create_project, create_team
from console.actor import Actor
from console.audit.service import record
from console.htmx import (
    is_fragment_request,
    redirect_or_client_redirect,
    render_confirm,
    render_page,
)
from console.models import Role, Sandbox


@login_required
@require_http_methods(["GET", "POST"])
def team_create(request: TeamRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = create_team(form.cleaned_data["name"], request.user)
        project = create_project(team, "Default")
        record(
            "team.create",
            team=team,
            actor=Actor.of(request),
            target_type="team",
            target_id=team.slug,
        )
        messages.success(request, f"Team {team.name} created with a project named Default.")
        return redirect("project-detail", team_slug=team.slug, project_slug=project.slug)
    return render(request, "console/teams/form.html", {"form": form})


@team_member_required(Role.VIEWER)
def team_detail(request: TeamRequest) -> HttpResponse:
    projects = request.team.projects.order_by("name")
    context = {"projects": projects, "project_form": ProjectForm()}
    return render_page(request, "console/teams/detail.html", context, partial="project-list")


@team_member_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def team_update(request: TeamRequest) -> HttpResponse:
    team = request.team
    form = TeamForm(request.POST or None, initial={"name": team.name})
    if request.method == "POST" and form.is_valid():
        old_name, team.name = team.name, form.cleaned_data["name"]
        team.save(update_fields=["name", "updated_at"])
        record(
            "team.rename",
            team=team,
            actor=Actor.of(request),
            target_type="team",
            target_id=team.slug,
            old_name=old_name,
            new_name=team.name,
        )
        messages.success(request, "Team renamed.")
        if not is_fragment_request(request):
            return redirect("team-update", team_slug=team.slug)
    context = {"form": form, "can_delete": request.membership.has_role(Role.OWNER)}
    return render_page(request, "console/teams/form.html", context, partial="team-form")


@team_member_required(Role.OWNER)
@require_http_methods(["GET", "POST"])
def team_delete(request: TeamRequest) -> HttpResponse:
    team = request.team
    live = Sandbox.objects.filter(project__team=team).live().count()
    if request.method == "POST" and live:
        # Deleting the rows would orphan running sandboxes in the runtime.
        messages.error(request, f"Destroy this team's {live} live sandbox(es) first.")
        return redirect_or_client_redirect(
            request, reverse("team-update", kwargs={"team_slug": team.slug})
        )
    if request.method == "POST":
        name = team.name
        # The team's own audit rows go with it; this row outlives it (team=None).
        record(
            "team.delete",
            team=None,
            actor=Actor.of(request),
            target_type="team",
            target_id=team.slug,
        )
        team.delete()
        messages.success(request, f"Team {name} deleted.")
        return redirect_or_client_redirect(request, reverse("home"))
    return render_confirm(
        request,
        title=f"Delete team {team.name}?",
        body="Every project, API key, sandbox and audit record of this team is deleted. "
        "This cannot be undone.",
        cancel=reverse("team-update", kwargs={"team_slug": team.slug}),
        button="Delete team",
        blocked=f"This team has {live} live sandbox(es); destroy them first." if live else "",
    )


urlpatterns = [
    path("teams/new/", team_create, name="team-create"),
    path("t/<slug:team_slug>/", team_detail, name="team-detail"),
    path("t/<slug:team_slug>/settings/", team_update, name="team-update"),
    path("t/<slug:team_slug>/delete/", team_delete, name="team-delete"),
]
