"""Resolving the team and project of a console request, and role checks.

Every team-scoped view wears `team_member_required`; a team or project the user
does not belong to is a 404 (no existence oracle), a role too low for the action
is a 403. A guard test walks the URLconf and fails on a team-scoped view without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from console.models import Membership, Project, Role, Team


class TeamAccessDenied(Http404):
    pass


class TeamRequest(HttpRequest):
    """A console request past `team_member_required`: the team and the caller's
    membership, and the project on project pages (the type views annotate with)."""

    user: User  # signed in: login_required comes first
    htmx: HtmxDetails
    team: Team
    membership: Membership
    project: Project


def team_member_required(role: str = Role.VIEWER) -> Callable:
    """Resolve `team_slug` (and `project_slug`) for a member holding at least `role`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @functools.wraps(view)
        def wrapper(
            request: TeamRequest, team_slug: str, *args: Any, **kwargs: Any
        ) -> HttpResponse:
            membership = (
                Membership.objects.select_related("team")
                .filter(team__slug=team_slug, user=request.user)
                .first()
            )
            if membership is None:
                raise TeamAccessDenied("No such team")
            request.team = membership.team
            request.membership = membership
            project_slug = kwargs.pop("project_slug", None)
            if project_slug is not None:
                project = Project.objects.filter(team=membership.team, slug=project_slug).first()
                if project is None:
                    raise TeamAccessDenied("No such project")
                project.team = membership.team  # loaded already: no query for project.team
                request.project = project
            if not membership.has_role(role):
                raise PermissionDenied(f"This needs the {role} role or higher")
            return view(request, *args, **kwargs)

        # A marker the URLconf-walking test reads; mypy does not model function attributes.
        wrapper.team_access_role = role  # type: ignore[attr-defined]
        return wrapper

    return decorate


def require_role(request: TeamRequest, role: str) -> None:
    """For views whose GET is open to viewers but whose POST needs more."""
    membership = request.membership
    if not membership.has_role(role):
        raise PermissionDenied(f"This needs the {role} role or higher")


def project_for_member(user, team_slug: str, project_slug: str, role: str) -> Project | None:
    """For console WebSockets (no view decorator): the project when `user` holds `role`
    in its team, else None (the consumer closes before accepting)."""
    if user is None or not user.is_authenticated:
        return None
    membership = (
        Membership.objects.select_related("team").filter(team__slug=team_slug, user=user).first()
    )
    if membership is None or not membership.has_role(role):
        return None
    return Project.objects.filter(team=membership.team, slug=project_slug).first()
