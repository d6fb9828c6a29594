"""Navigation context for full pages: the user's teams and the current team/project."""

from __future__ import annotations

from django.http import HttpRequest

from console.htmx import is_fragment_request


def navigation(request: HttpRequest) -> dict:
    # No queries for htmx fragments: they never render the navigation.
    if is_fragment_request(request) or not getattr(request, "user", None):
        return {}
    if not request.user.is_authenticated:
        return {}
    from console.models import Team

    return {
        "nav_teams": list(Team.objects.for_user(request.user).prefetch_related("projects")),
        "current_team": getattr(request, "team", None),
        "current_project": getattr(request, "project", None),
        "current_membership": getattr(request, "membership", None),
    }
