"""Plain builder functions for tests (no factory_boy)."""

from __future__ import annotations

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from console.accounts.users import create_project
from console.keys.service import IssuedKey, create_api_key
from console.models import KeyScope, Membership, Project, Role, Sandbox, SandboxStatus, Team
from console.routing import api_websocket_urlpatterns

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


def make_sandbox_row(project: Project, status: str = SandboxStatus.RUNNING) -> Sandbox:
    """A sandbox row with no runtime behind it (for grants, pages and the gateway's auth)."""
    return Sandbox.objects.create(project=project, status=status)


_api_sockets = URLRouter(api_websocket_urlpatterns)


def api_socket(path: str, key: str | None = None) -> WebsocketCommunicator:
    """A Channels communicator on the /v1 WebSocket routes, sending `key` as a Bearer token."""
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    return WebsocketCommunicator(_api_sockets, path, headers=headers)
