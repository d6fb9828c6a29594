"""Plain builder functions for tests (no factory_boy)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from console.accounts import create_project
from console.keys import IssuedKey, create_api_key
from console.models import KeyScope, Membership, Project, Role, Team

PASSWORD = "correct-horse-battery"


def make_user(email: str):
    User = get_user_model()
    return User.objects.create_user(username=email, email=email, password=PASSWORD)


def make_team(slug: str, owner, **members_by_role) -> Team:
    team = Team.objects.create(slug=slug, name=slug.title())
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    for role, user in members_by_role.items():
        Membership.objects.create(team=team, user=user, role=role)
    return team


def make_project(team: Team, name: str = "Default") -> Project:
    return create_project(team, name)


def make_key(project: Project, scope: str = KeyScope.FULL, **kwargs) -> IssuedKey:
    return create_api_key(project, name=kwargs.pop("name", "test key"), scope=scope, **kwargs)
