"""The console's live socket (console/live_ws.py): a page is told when its sandbox or its
grants changed, by whoever changed them, from any thread; nothing is sent otherwise.
Runs on whichever channel layer the settings give (in-memory, or Redis with REDIS_URL)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from console.actor import SYSTEM
from console.previews import service as previews
from console.routing import console_websocket_urlpatterns
from console.sandboxes.lifecycle import record_event
from gateway import accounting
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

_sockets = URLRouter(console_websocket_urlpatterns)


def socket(user, path: str) -> WebsocketCommunicator:
    """The live route with `user` as AuthMiddlewareStack would set it (the Origin check and
    the session lookup in front of it are console/asgi.py's, tested with the exec socket)."""
    ws = WebsocketCommunicator(_sockets, path)
    ws.scope["user"] = user
    return ws


@pytest.fixture
def rows(project, other_project):
    return (
        factories.make_sandbox_row(project),
        factories.make_sandbox_row(project),
        factories.make_sandbox_row(other_project),
    )


async def test_sandbox_page_hears_its_own_state_changes_from_any_thread(viewer, project, rows):
    mine, sibling, _ = rows
    ws = socket(viewer, f"/t/acme/p/{project.slug}/sandboxes/{mine.public_id}/live/ws")
    assert (await ws.connect())[0]
    # Another sandbox of the same project changes: this page hears nothing.
    await asyncio.to_thread(record_event, project, "hibernate", sandbox_id=sibling.public_id)
    assert await ws.receive_nothing(timeout=0.3)
    # A plain thread, as the worker's timeout job is: the message still arrives.
    await asyncio.to_thread(record_event, project, "hibernate", sandbox_id=mine.public_id)
    assert await ws.receive_json_from(timeout=5) == {"type": "changed", "topic": "sandbox"}
    # As the target of a fork, too.
    await asyncio.to_thread(
        record_event,
        project,
        "fork",
        sandbox_id=sibling.public_id,
        target_sandbox_id=mine.public_id,
    )
    assert (await ws.receive_json_from(timeout=5))["topic"] == "sandbox"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_grant_pages_hear_creates_revokes_and_counters(viewer, project, rows):
    mine, sibling, _ = rows
    everything = socket(viewer, f"/t/acme/p/{project.slug}/previews/live/ws")
    only_mine = socket(
        viewer, f"/t/acme/p/{project.slug}/sandboxes/{mine.public_id}/previews/live/ws"
    )
    assert (await everything.connect())[0] and (await only_mine.connect())[0]
    grant, _ = await database_sync_to_async(previews.create_grant)(sibling, 3000, actor=SYSTEM)
    assert await everything.receive_json_from(timeout=5) == {"type": "changed", "topic": "grants"}
    assert await only_mine.receive_nothing(timeout=0.3)
    mine_grant, _ = await database_sync_to_async(previews.create_grant)(mine, 3000, actor=SYSTEM)
    assert (await only_mine.receive_json_from(timeout=5))["topic"] == "grants"
    assert (await everything.receive_json_from(timeout=5))["topic"] == "grants"
    # The gateway counts a use; its flush (a thread) writes it and tells the pages once.
    accounting.count_use(mine_grant.public_id, http=True)
    await asyncio.to_thread(accounting.flush)
    assert (await only_mine.receive_json_from(timeout=5))["topic"] == "grants"
    assert (await everything.receive_json_from(timeout=5))["topic"] == "grants"
    await database_sync_to_async(previews.revoke_grant)(grant, actor=SYSTEM)
    assert (await everything.receive_json_from(timeout=5))["topic"] == "grants"
    assert await only_mine.receive_nothing(timeout=0.3)
    await everything.disconnect()
    await only_mine.disconnect()


async def test_outsiders_and_foreign_sandboxes_are_refused(outsider, viewer, project, rows):
    mine, _, foreign = rows
    for user, path in (
        (outsider, f"/t/acme/p/{project.slug}/sandboxes/{mine.public_id}/live/ws"),
        (outsider, f"/t/acme/p/{project.slug}/previews/live/ws"),
        (viewer, f"/t/acme/p/{project.slug}/sandboxes/{foreign.public_id}/live/ws"),
        (viewer, f"/t/acme/p/{project.slug}/sandboxes/sb_nope/previews/live/ws"),
    ):
        ws = socket(user, path)
        connected, code = await ws.connect()
        assert connected is False and code == 4403, path
