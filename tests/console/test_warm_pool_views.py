"""The console's warm pools page: list with counts, create, enable/disable/drain/reconcile,
scale, delete (plain POST and htmx), who may do what, and the live socket that tells
the page a pool changed."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from console.models import AuditEvent, Sandbox, WarmPool
from console.routing import console_websocket_urlpatterns
from console.warm_pools import pools
from tests import factories

HTMX = {"HTTP_HX_REQUEST": "true"}


def url(project, name: str, **kwargs) -> str:
    return reverse(
        name, kwargs={"team_slug": project.team.slug, "project_slug": project.slug, **kwargs}
    )


@pytest.fixture
def pool(project):
    return pools.create_pool(
        project, {"template_ref": "base", "name": "small", "min_ready": 1, "max_ready": 2}
    )


@pytest.mark.django_db
def test_viewer_sees_pools_with_their_counts_but_no_forms(viewer_client, project, pool):
    page = viewer_client.get(url(project, "warmpool-list"))
    assert page.status_code == 200
    body = page.content.decode()
    assert pool.public_id in body and 'data-ready="0"' in body
    assert "warm-pools-changed" in body and "/warm-pools/live/ws" in body
    assert "Create warm pool" not in body and "Drain" not in body
    refused = viewer_client.post(
        url(project, "warmpool-action", pool_id=pool.public_id, action="drain")
    )
    assert refused.status_code in (403, 404)
    pool.refresh_from_db()
    assert pool.state == "enabled"


@pytest.mark.django_db
def test_member_creates_a_pool_and_sees_refusals(member_client, project):
    made = member_client.post(
        url(project, "warmpool-create"),
        {"name": "web", "template": "base", "min_ready": 1, "max_ready": 3, "vcpus": 2,
         "memory_mb": 512, "checkout_policy": "prefer"},
    )  # fmt: skip
    assert made.status_code == 302
    pool = WarmPool.objects.get(project=project, name="web")
    assert (pool.min_ready, pool.max_ready, pool.template) == (1, 3, "base")
    bad = member_client.post(
        url(project, "warmpool-create"),
        {"name": "web2", "template": "nope", "min_ready": 1, "max_ready": 3, "vcpus": 2,
         "memory_mb": 512, "checkout_policy": "prefer"},
    )  # fmt: skip
    assert bad.status_code == 400 and "not found" in bad.content.decode()
    assert not WarmPool.objects.filter(name="web2").exists()


@pytest.mark.django_db
def test_actions_scale_and_delete_with_htmx(member_client, project, pool):
    for action, state in (("disable", "disabled"), ("enable", "enabled"), ("drain", "draining")):
        answer = member_client.post(
            url(project, "warmpool-action", pool_id=pool.public_id, action=action), **HTMX
        )
        assert answer.status_code == 200
        assert 'id="pool-table"' in answer.content.decode()
        assert "<html" not in answer.content.decode()  # only the fragment
        pool.refresh_from_db()
        assert pool.state == state
    scaled = member_client.post(
        url(project, "warmpool-scale", pool_id=pool.public_id), {"min_ready": 2, "max_ready": 4}
    )
    assert scaled.status_code == 302
    pool.refresh_from_db()
    assert (pool.min_ready, pool.max_ready) == (2, 4)
    member_client.post(
        url(project, "warmpool-scale", pool_id=pool.public_id), {"min_ready": 5, "max_ready": 4}
    )
    pool.refresh_from_db()
    assert (pool.min_ready, pool.max_ready) == (2, 4)  # refused: min above max
    assert (
        member_client.get(url(project, "warmpool-delete", pool_id=pool.public_id)).status_code
        == 200
    )
    assert (
        member_client.post(url(project, "warmpool-delete", pool_id=pool.public_id)).status_code
        == 302
    )
    pool.refresh_from_db()
    assert pool.state == "deleted"
    actions = AuditEvent.objects.filter(target_id=pool.public_id, actor__isnull=False)
    assert "warm_pool.deleted" in set(actions.values_list("action", flat=True))
    assert pool.public_id not in member_client.get(url(project, "warmpool-list")).content.decode()


@pytest.mark.django_db
def test_another_teams_pool_is_not_found(
    outsider_client, member_client, project, pool, other_project
):
    assert outsider_client.get(url(project, "warmpool-list")).status_code == 404
    # A member of this team naming the pool under the other team's project: not found either.
    other = url(other_project, "warmpool-action", pool_id=pool.public_id, action="drain")
    assert member_client.post(other).status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_the_page_hears_pool_changes(viewer, project):
    sockets = URLRouter(console_websocket_urlpatterns)
    ws = WebsocketCommunicator(
        sockets, f"/t/{project.team.slug}/p/{project.slug}/warm-pools/live/ws"
    )
    ws.scope["user"] = viewer
    assert (await ws.connect())[0]
    made = await database_sync_to_async(pools.create_pool)(
        project, {"template_ref": "base", "name": "live", "min_ready": 0, "max_ready": 1}
    )
    assert await ws.receive_json_from(timeout=5) == {"type": "changed", "topic": "warm_pools"}
    await asyncio.to_thread(pools.disable_pool, made)  # from a plain thread, as the worker
    assert (await ws.receive_json_from(timeout=5))["topic"] == "warm_pools"
    await ws.disconnect()


@pytest.mark.django_db
def test_pool_sandboxes_are_hidden_from_the_console_until_checked_out(viewer_client, project, pool):
    waiting = factories.make_sandbox_row(project)
    Sandbox.objects.filter(pk=waiting.pk).update(warm_pool=pool)
    mine = factories.make_sandbox_row(project)
    listed = viewer_client.get(url(project, "sandbox-list")).content.decode()
    assert mine.public_id in listed and waiting.public_id not in listed
    page = url(project, "sandbox-detail", sandbox_id=waiting.public_id)
    assert viewer_client.get(page).status_code == 404
    Sandbox.objects.filter(pk=waiting.pk).update(warm_pool=None)  # checked out
    assert viewer_client.get(page).status_code == 200


@pytest.mark.django_db
def test_a_pool_that_follows_a_tag_shows_its_build_and_tag(member_client, project):
    from console.models import Template, TemplateBuild, TemplateTag
    from console.sandbox_templates.models import BuildStatus

    template = Template.objects.create(team=project.team, project=project, name="demo")
    build = TemplateBuild.objects.create(
        template=template, project=project, status=BuildStatus.READY, layers=["a" * 32]
    )
    TemplateTag.objects.create(template=template, tag="stable", build=build)
    made = member_client.post(
        url(project, "warmpool-create"),
        {"name": "web", "template": "demo", "min_ready": 0, "max_ready": 1, "vcpus": 2,
         "memory_mb": 512, "checkout_policy": "prefer", "track_tag": "stable"},
    )  # fmt: skip
    assert made.status_code == 302
    pool = WarmPool.objects.get(project=project, name="web")
    assert (pool.version_policy, pool.track_tag, pool.template_build) == (
        "track_tag", "stable", build,
    )  # fmt: skip
    body = member_client.get(url(project, "warmpool-list")).content.decode()
    assert build.public_id in body and "follows tag <code>stable</code>" in body
    refused = member_client.post(
        url(project, "warmpool-create"),
        {"name": "web2", "template": "demo", "min_ready": 0, "max_ready": 1, "vcpus": 2,
         "memory_mb": 512, "checkout_policy": "prefer", "track_tag": "nope"},
    )  # fmt: skip
    assert "has no tag" in refused.content.decode()
