"""Resolving the upstream: sandbox states, and wake-on-traffic through the real local driver."""

from __future__ import annotations

import json
import time

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from console.actor import SYSTEM, Actor
from console.models import Sandbox, SandboxStatus
from console.previews import service as previews
from console.runtime import get_driver
from console.runtime.base import ExecRequest
from console.sandboxes import service as sandboxes
from tests.gateway.conftest import header, http
from tests.live import free_port

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def code_of(response) -> str:
    return json.loads(response["body"])["code"]


async def cookie_for(sandbox, port) -> bytes:
    _, raw = await db(previews.create_grant)(sandbox, port, actor=SYSTEM)
    response = await http(sandbox, f"/?edge_token={raw['http_port']}", port=port).get_response()
    assert response["status"] == 303, response
    return header(response, b"set-cookie").split(b";")[0]


@pytest.mark.parametrize(
    "status, auto_resume, expected",
    [
        (SandboxStatus.PAUSED, False, (409, "sandbox_paused")),
        (SandboxStatus.DESTROYED, False, (410, "sandbox_gone")),
        (SandboxStatus.CREATING, False, (503, "sandbox_starting")),
        (SandboxStatus.ERROR, False, (502, "sandbox_error")),
    ],
)
async def test_sandbox_states_get_clear_answers(sandbox, status, auto_resume, expected):
    cookie = await cookie_for(sandbox, 3000)
    await db(Sandbox.objects.filter(pk=sandbox.pk).update)(status=status, auto_resume=auto_resume)
    from gateway import upstream

    upstream._sandboxes.pop(sandbox.public_id, None)
    response = await http(
        sandbox, "/", headers=[(b"cookie", cookie), (b"sec-fetch-mode", b"navigate")]
    ).get_response()
    assert response["status"] == expected[0]
    assert header(response, b"x-nullspace-preview-error") == expected[1].encode()
    if expected[1] == "sandbox_starting":
        assert header(response, b"retry-after") == b"2"


@pytest.fixture
def runtime(settings, tmp_path):
    settings.RUNTIME_ROOT = tmp_path / "runtime"
    settings.RUNTIME_NETNS = "off"
    settings.PREVIEW_UPSTREAM_RESOLVER = "gateway.upstream.driver_address"  # the real default
    get_driver.cache_clear()
    yield
    try:
        for sandbox in Sandbox.objects.filter(status__in=["running", "paused", "creating"]):
            get_driver().destroy(sandbox.public_id)
    finally:
        get_driver().reconcile(set())  # whatever another state (or an error above) left behind
        get_driver.cache_clear()


def serving_sandbox(project, port: int, **kwargs) -> Sandbox:
    sandbox, _ = sandboxes.create_sandbox(project, actor=Actor(), **kwargs)
    driver = get_driver()
    driver.start_process(
        sandbox.public_id,
        ExecRequest(
            f"echo hello-from-sandbox > index.html && python3 -m http.server {port} --bind 0.0.0.0",
            shell=True,
        ),
        default_cwd="/workspace",
        envs={},
    )
    import http.client

    deadline = time.monotonic() + 10
    while True:
        try:
            conn = http.client.HTTPConnection(*driver.upstream(sandbox.public_id, port), timeout=1)
            conn.request("GET", "/index.html")
            conn.getresponse().read()
            return sandbox
        except OSError:
            assert time.monotonic() < deadline, "the sandbox's server did not start"
            time.sleep(0.05)


async def test_a_paused_auto_resume_sandbox_wakes_on_traffic(runtime, project):
    port = free_port()
    sandbox = await db(serving_sandbox)(project, port, auto_resume=True)
    cookie = await cookie_for(sandbox, port)
    await db(sandboxes.pause_sandbox)(sandbox, actor=Actor())
    assert (await db(Sandbox.objects.get)(pk=sandbox.pk)).status == SandboxStatus.PAUSED
    from gateway import upstream

    upstream._sandboxes.pop(sandbox.public_id, None)
    response = await http(
        sandbox, "/index.html", headers=[(b"cookie", cookie)], port=port
    ).get_response(timeout=20)
    assert response["status"] == 200
    assert response["body"] == b"hello-from-sandbox\n"
    assert (await db(Sandbox.objects.get)(pk=sandbox.pk)).status == SandboxStatus.RUNNING


async def test_the_wait_for_a_resume_is_bounded(runtime, project, settings):
    settings.PREVIEW_RESUME_WAIT_SECONDS = 1
    port = free_port()
    sandbox = await db(serving_sandbox)(project, port, auto_resume=True)
    cookie = await cookie_for(sandbox, port)
    await db(sandboxes.pause_sandbox)(sandbox, actor=Actor())
    # Another resume is in flight (claimed just now), so ours waits for it, within the bound.
    await db(Sandbox.objects.filter(pk=sandbox.pk).update)(
        transition="resuming", transition_started_at=timezone.now()
    )
    from gateway import upstream

    upstream._sandboxes.pop(sandbox.public_id, None)
    started = time.monotonic()
    response = await http(sandbox, "/", headers=[(b"cookie", cookie)], port=port).get_response(
        timeout=10
    )
    assert time.monotonic() - started < 3
    assert (response["status"], code_of(response)) == (503, "sandbox_starting")
    assert header(response, b"retry-after") == b"5"
    # The gateway's waiter may still be running in its thread: no auto-resume for it once the
    # "other resume" ends, or it would remake the sandbox after this test's teardown.
    await db(Sandbox.objects.filter(pk=sandbox.pk).update)(transition="", auto_resume=False)
