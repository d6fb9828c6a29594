"""Users, their personal team and first project."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from console.ids import new_public_id
from console.models import Membership, Project, Role, Team


def unique_team_slug(base: str) -> str:
    slug = slugify(base)[:40] or "team"
    candidate = slug
    while Team.objects.filter(slug=candidate).exists():
        candidate = f"{slug}-{new_public_id('', 4)}"
    return candidate


@transaction.atomic
def create_team(name: str, owner, *, personal: bool = False, slug: str | None = None) -> Team:
    team = Team.objects.create(name=name, slug=slug or unique_team_slug(name), personal=personal)
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


def create_project(team: Team, name: str, slug: str | None = None) -> Project:
    base = slugify(slug or name)[:50] or "project"
    candidate = base
    while Project.objects.filter(team=team, slug=candidate).exists():
        candidate = f"{base}-{new_public_id('', 4)}"
    return Project.objects.create(team=team, name=name, slug=candidate)


@transaction.atomic
def create_user(email: str, password: str | None) -> tuple:
    """A new user with a personal team holding one project named Default."""
    User = get_user_model()
    user = User.objects.create_user(username=email.lower(), email=email.lower(), password=password)
    team = create_team(email.split("@")[0] or "personal", user, personal=True)
    project = create_project(team, "Default")
    return user, team, project
