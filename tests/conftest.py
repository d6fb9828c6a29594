"""Shared fixtures: an owner, member, viewer and outsider; a team with a project; keys;
a local runtime with a real sandbox; one live server for the `cli` modules.

Test-only overrides live here (fast password hasher, locmem email), not in settings.
"""

from __future__ import annotations

import os

import pytest
from django.test import Client

from console.actor import Actor
from console.models import KeyScope
from console.runtime import get_driver
from console.sandboxes import service as sandboxes
from tests import factories
from tests.live import remove_tree, start_live_server

# The machine's template layer store is shared by every test run's database: no worker
# a test starts (live servers, tests/jobs' workers inherit this environment) collects it.
os.environ["LAYER_GC_GRACE_HOURS"] = "0"

# The CLI file tests send one chunked body past this limit; 1 GiB (the default) would be slow.
LIVE_MAX_FILE_BYTES = 30 * 1024 * 1024

# Tests whose timing depends on the whole machine (a live server, the browser, sandboxes, the
# gateway's sockets) get one rerun, listed in the summary ("N rerun"); one that fails twice
# fails the run. Everything else runs once (docs/development.md, "Reruns").
TIMING_BOUND_MARKERS = ("e2e", "cli")
TIMING_BOUND_DIRS = ("tests/gateway/",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        if any(item.get_closest_marker(m) for m in TIMING_BOUND_MARKERS) or path.startswith(
            TIMING_BOUND_DIRS
        ):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))


@pytest.fixture(autouse=True)
def _fast_test_settings(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The machine's layer store is shared by every test run: no job collects it here
    # (tests/console/test_layer_gc.py turns collection on over a directory of its own).
    settings.LAYER_GC_GRACE_HOURS = 0


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


@pytest.fixture
def runtime(settings, tmp_path):
    """The local driver on this test's own data and runtime directories, without network
    namespaces (these tests need no ports); whatever sandbox is left is destroyed."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    settings.RUNTIME_ROOT = tmp_path / "runtime"
    settings.RUNTIME_NETNS = "off"
    get_driver.cache_clear()
    driver = get_driver()
    yield driver
    driver.reconcile(set())
    get_driver.cache_clear()


@pytest.fixture
def sandbox(runtime, project):
    """A real running sandbox of `project`. Modules that need only the row (no runtime)
    override this with `factories.make_sandbox_row`."""
    made, _token = sandboxes.create_sandbox(project, actor=Actor())
    yield made
    sandboxes.destroy_sandbox(made, actor=Actor())


@pytest.fixture
def workspace(sandbox):
    """The host directory behind the sandbox's /workspace."""
    return get_driver().host_path(sandbox.public_id, "/workspace")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A real server (daphne + worker in a subprocess) for one `cli` module. One server
    for the whole session measured no faster (start-up is ~3 s of a ~100 s suite whose
    time goes to CLI calls), so each module keeps a server of its own."""
    server = start_live_server(
        tmp_path_factory.mktemp("live"), MAX_FILE_BYTES=str(LIVE_MAX_FILE_BYTES)
    )
    yield server
    server.stop()
    remove_tree(server.data_dir)


@pytest.fixture(scope="module")
def sandbox_id(live):
    """A sandbox on the live server for one module, killed when the module ends."""
    made = live.new_sandbox("--cwd", "/workspace", "--timeout", "900")
    yield made
    live.cli("sandbox", "kill", made)
