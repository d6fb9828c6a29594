"""Gateway fixtures: real upstreams on loopback, a running sandbox routed to them, grants."""

from __future__ import annotations

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from console.actor import SYSTEM
from console.asgi import application
from console.models import Sandbox, SandboxStatus
from console.previews import service as previews
from tests.gateway import upstreams

PORT = 3000


@pytest.fixture(autouse=True)
def _gateway_settings(settings):
    settings.PREVIEW_DOMAIN = "preview.localhost"
    settings.PREVIEW_SCHEME = "http"
    settings.PREVIEW_PORT = 8000
    settings.PREVIEW_UPSTREAM_RESOLVER = "tests.gateway.upstreams.resolve"


@pytest.fixture(autouse=True)
async def _close_gateway():
    yield
    from gateway.app import close_gateway

    await close_gateway()


@pytest.fixture
def sandbox(transactional_db, project):
    return Sandbox.objects.create(project=project, status=SandboxStatus.RUNNING)


@pytest.fixture
async def http_upstream():
    runner, port = await upstreams.start_http()
    yield port
    await runner.cleanup()


@pytest.fixture
async def ws_upstream():
    server, port = await upstreams.start_websocket()
    yield port
    server.close()
    await server.wait_closed()


@pytest.fixture
def routed(sandbox, http_upstream):
    """The sandbox's port 3000 answered by the HTTP upstream."""
    upstreams.ROUTES[(sandbox.public_id, PORT)] = ("127.0.0.1", http_upstream)
    yield sandbox
    upstreams.ROUTES.pop((sandbox.public_id, PORT), None)


@pytest.fixture
def grant(sandbox):
    """(grant, raw tokens) for a direct grant on port 3000, both transports."""
    return previews.create_grant(sandbox, PORT, expires_in_seconds=600, actor=SYSTEM)


def host_for(sandbox, port: int = PORT) -> bytes:
    return f"{port}-{sandbox.host_label}.preview.localhost:8000".encode()


def http(
    sandbox, path: str, *, method: str = "GET", headers=(), body: bytes = b"", port: int = PORT
):
    all_headers = [(b"host", host_for(sandbox, port)), *headers]
    return HttpCommunicator(application, method, path, body=body, headers=all_headers)


def websocket(sandbox, path: str, *, headers=(), subprotocols=None, port: int = PORT):
    all_headers = [(b"host", host_for(sandbox, port)), *headers]
    return WebsocketCommunicator(application, path, headers=all_headers, subprotocols=subprotocols)


def header(response, name: bytes) -> bytes | None:
    for key, value in response["headers"]:
        if key.lower() == name:
            return value
    return None
