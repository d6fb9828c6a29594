"""Shared fixtures: an owner, member, viewer and outsider; a team with a project; keys.

Test-only overrides live here (fast password hasher, locmem email), not in settings.
"""

from __future__ import annotations

import pytest
from django.test import Client

from console.models import KeyScope
from tests import factories


@pytest.fixture(autouse=True)
def _fast_test_settings(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def owner(db):
    return factories.make_user("alice@example.com")


@pytest.fixture
def member(db):
    return factories.make_user("bob@example.com")


@pytest.fixture
def viewer(db):
    return factories.make_user("carol@example.com")


@pytest.fixture
def outsider(db):
    return factories.make_user("charlie@example.com")


@pytest.fixture
def team(owner, member, viewer):
    return factories.make_team("acme", owner, member=member, viewer=viewer)


@pytest.fixture
def project(team):
    return factories.make_project(team, "Web")


@pytest.fixture
def other_team(outsider):
    return factories.make_team("other", outsider)


@pytest.fixture
def other_project(other_team):
    return factories.make_project(other_team, "Secret")


@pytest.fixture
def api_key(project):
    """(raw key, ApiKey row) for `project`, full scope."""
    issued = factories.make_key(project)
    return issued.raw, issued.key


@pytest.fixture
def read_key(project):
    issued = factories.make_key(project, scope=KeyScope.READ, name="read only")
    return issued.raw, issued.key


@pytest.fixture
def other_api_key(other_project):
    issued = factories.make_key(other_project)
    return issued.raw, issued.key


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner):
    return _client_for(owner)


@pytest.fixture
def member_client(member):
    return _client_for(member)


@pytest.fixture
def viewer_client(viewer):
    return _client_for(viewer)


@pytest.fixture
def outsider_client(outsider):
    return _client_for(outsider)


@pytest.fixture
def csrf_client(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


@pytest.fixture
def api(client, api_key):
    """A Django test client that sends the project's API key."""
    raw, _ = api_key
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return client
