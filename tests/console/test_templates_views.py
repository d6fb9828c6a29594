"""Template console pages through the Django test client: who sees and does what, the build
form's refusals, a build's log grouped by phase and its event stream. The live build log
in a browser is tests/e2e/test_templates_console.py."""

from __future__ import annotations

import pytest

from console.models import Template, TemplateBuild, TemplateBuildLog, TemplateTag
from console.sandbox_templates.models import BuildStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(project):
    template = Template.objects.create(team=project.team, project=project, name="demo")
    build = TemplateBuild.objects.create(
        template=template, project=project, status=BuildStatus.READY, steps_total=1, cache_hits=1
    )
    TemplateTag.objects.create(template=template, tag="default", build=build)
    for offset, (kind, phase, message, level) in enumerate(
        [
            ("start", "prepare", "Building demo", "info"),
            ("cache", "step 1/1: run", "cache hit: layer abc", "info"),
            ("message", "step 1/1: run", "careful", "warn"),
            ("end", "finalize", "Built demo", "info"),
        ]
    ):
        TemplateBuildLog.objects.create(
            build=build, offset=offset, kind=kind, phase=phase, message=message, level=level
        )
    return template, build


def base(project) -> str:
    return f"/t/{project.team.slug}/p/{project.slug}/templates/"


def test_list_and_template_page(viewer_client, member_client, project, built):
    template, build = built
    page = viewer_client.get(base(project)).content.decode()
    assert "nullspace/base" in page and "demo" in page and build.public_id in page
    assert 'id="template-new"' not in page  # viewers do not build
    assert 'id="template-new"' in member_client.get(base(project)).content.decode()
    detail = viewer_client.get(base(project) + "demo/").content.decode()
    assert build.public_id in detail and "default" in detail and "private" in detail
    assert viewer_client.post(base(project) + "demo/", {"visibility": "public"}).status_code == 403
    member_client.post(base(project) + "demo/", {"visibility": "public"})
    template.refresh_from_db()
    assert template.visibility == "public"


def test_outsiders_see_nothing(outsider_client, project, built):
    _, build = built
    assert outsider_client.get(base(project)).status_code in (403, 404)
    assert outsider_client.get(base(project) + f"builds/{build.public_id}/").status_code in (
        403,
        404,
    )


def test_build_page_groups_the_log_by_phase(viewer_client, project, built):
    _, build = built
    page = viewer_client.get(base(project) + f"builds/{build.public_id}/").content.decode()
    assert page.index('data-phase="prepare"') < page.index('data-phase="step 1/1: run"')
    assert "lvl-warn" in page and "kind-cache" in page and 'data-live="0"' in page
    stream = viewer_client.get(base(project) + f"builds/{build.public_id}/log/?after=3")
    assert stream.status_code == 200 and stream["Content-Type"] == "text/event-stream"


def test_the_build_form_refuses_what_cannot_be_built_and_starts_the_rest(
    viewer_client, member_client, member, project
):
    assert viewer_client.get(base(project) + "new/").status_code == 403
    refused = member_client.post(
        base(project) + "new/", {"name": "x", "base_image": "debian:sid", "apt_install": "jq"}
    )
    assert refused.status_code == 200 and "debian:bookworm" in refused.content.decode()
    assert not TemplateBuild.objects.exists()
    started = member_client.post(
        base(project) + "new/",
        {
            "name": "formed",
            "base_image": "debian:bookworm",
            "apt_install": "jq",
            "run": "echo one\necho two",
            "envs": "MODE=x",
            "workdir": "/srv",
        },
    )
    build = TemplateBuild.objects.get()
    assert started.status_code == 302 and started["Location"].endswith(f"{build.public_id}/")
    assert build.triggered_by == f"user:{member.pk}"  # the console face's Actor
    steps = build.request["steps"]
    assert [s["action"] for s in steps] == ["apt_install", "run", "run", "workdir"]
    assert build.request["runtime_config"] == {
        "default_envs": {"MODE": "x"},
        "default_workdir": "/srv",
    }
