"""Navigation context for full pages: the user's teams, the current team/project and its menu.

The project menu is PROJECT_NAV. An entry appears only once its URL name exists (and
only to roles that may open it), so a resource adds its page by defining that URL name.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from console.accounts.models.teams import Role
from console.htmx import is_fragment_request

# (label, URL name, scope, lowest role that may open it). "project" URLs take team_slug and
# project_slug; "team" URLs take team_slug.
PROJECT_NAV = [
    ("Sandboxes", "sandbox-list", "project", Role.VIEWER),
    ("Warm pools", "warmpool-list", "project", Role.VIEWER),
    ("Agent deployments", "agent-list", "project", Role.VIEWER),
    ("Templates", "template-list", "project", Role.VIEWER),
    ("Volumes", "volume-list", "project", Role.VIEWER),
    ("Preview links", "grant-list", "project", Role.VIEWER),
    ("Webhooks", "webhook-list", "project", Role.VIEWER),
    ("API keys", "apikey-list", "project", Role.VIEWER),
    ("Audit log", "audit-list", "team", Role.VIEWER),
    ("Members", "member-list", "team", Role.VIEWER),
    ("Settings", "project-update", "project", Role.ADMIN),
]


LAST_PROJECT = "nav_last_project"


def _url_prefix(url_name: str) -> str:
    return url_name.split("-", 1)[0] + "-"


def project_nav(request: HttpRequest, team, project, membership) -> list[dict]:
    match = getattr(request, "resolver_match", None)
    current = match.url_name if match and match.url_name else ""
    items = []
    for label, url_name, scope, role in PROJECT_NAV:
        if membership is not None and not membership.has_role(role):
            continue
        kwargs = {"team_slug": team.slug}
        if scope == "project":
            kwargs["project_slug"] = project.slug
        try:
            url = reverse(url_name, kwargs=kwargs)
        except NoReverseMatch:
            continue
        active = current.startswith(_url_prefix(url_name)) and current != "project-detail"
        items.append({"label": label, "url": url, "name": url_name, "active": active})
    return items


def navigation(request: HttpRequest) -> dict:
    # No queries for htmx fragments: they never render the navigation.
    if is_fragment_request(request) or not getattr(request, "user", None):
        return {}
    if not request.user.is_authenticated:
        return {}
    from console.models import Team

    team = getattr(request, "team", None)
    project = getattr(request, "project", None)
    membership = getattr(request, "membership", None)
    if project is not None:
        if request.session.get(LAST_PROJECT) != project.pk:
            request.session[LAST_PROJECT] = project.pk
    elif team is not None:
        # Team pages (members, audit) keep the menu of the project the user came from.
        projects = team.projects.order_by("created_at")
        project = (
            projects.filter(pk=request.session.get(LAST_PROJECT, 0)).first() or projects.first()
        )
    return {
        "nav_teams": list(Team.objects.for_user(request.user).prefetch_related("projects")),
        "current_team": team,
        "current_project": getattr(request, "project", None),
        "nav_project": project,
        "current_membership": membership,
        "nav_team_admin": bool(membership and membership.has_role(Role.ADMIN)),
        "project_nav": project_nav(request, project.team, project, membership) if project else [],
    }


def runtime_banner(request: HttpRequest) -> dict:
    """A warning on every full page while sandboxes run without isolation."""
    from django.conf import settings

    if is_fragment_request(request) or settings.RUNTIME_ISOLATION != "none":
        return {}
    return {"runtime_unisolated": True}
