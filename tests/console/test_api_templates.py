"""/v1/templates through the Django test client: what is refused and why (stable codes,
never a 5xx), what another team sees (private: nothing; public: read only), blobs
checked by their SHA-256 and kept per team, a waiting build cancelled at once.
Builds that run are in tests/console/test_cli_templates.py (the real CLI, a live server)."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

import pytest
from django.test import Client

from console.models import Template, TemplateBuild, TemplateTag, WarmPool
from console.sandbox_templates.models import BuildStatus

pytestmark = pytest.mark.django_db


def _client(raw: str) -> Client:
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return client


@pytest.fixture
def other(other_api_key):
    return _client(other_api_key[0])


@pytest.fixture
def ready(project):
    """A team template with one ready build tagged `default` (rows only)."""
    template = Template.objects.create(team=project.team, project=project, name="demo")
    build = TemplateBuild.objects.create(
        template=template,
        project=project,
        status=BuildStatus.READY,
        layers=["a" * 32],
        runtime_defaults={"envs": {"MODE": "x"}, "workdir": "/srv"},
    )
    TemplateTag.objects.create(template=template, tag="default", build=build)
    return template, build


def ref_url(ref: str, suffix: str = "") -> str:
    return f"/v1/templates/refs/{quote(ref, safe='')}{suffix}"


def test_list_has_the_builtin_and_fields_are_checked(api, ready):
    listed = api.get("/v1/templates").json()
    refs = [t["canonical_ref"] for t in listed]
    assert "nullspace/base:default" in refs and "acme/demo:default" in refs
    mine = next(t for t in listed if t["name"] == "demo")
    assert mine["runtime_defaults"]["default_env_keys"] == ["MODE"]
    assert mine["runtime_defaults"]["default_workdir"] == "/srv"
    bad = api.get("/v1/templates?fields=id,nope")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_fields"


def test_another_team_sees_a_private_template_as_missing_and_a_public_one_read_only(
    api, other, ready
):
    template, build = ready
    for ref in ("acme/demo", template.public_id, "acme/demo:default"):
        answer = other.get(ref_url(ref))
        assert answer.status_code == 404 and answer.json()["code"] == "template_not_found"
    assert other.get(f"/v1/templates/builds/{build.public_id}").status_code == 404
    assert other.delete(ref_url("acme/demo")).status_code == 404
    api.patch(
        ref_url("demo", "/visibility"), {"visibility": "public"}, content_type="application/json"
    )
    assert other.get(ref_url("acme/demo")).json()["visibility"] == "public"
    refused = other.post(
        ref_url("acme/demo", "/rename"), {"new_name": "mine"}, content_type="application/json"
    )
    assert refused.status_code == 403
    assert other.get(f"/v1/templates/builds/{build.public_id}").status_code == 404
    assert other.get("/v1/templates/namespaces/acme").status_code == 404


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"base_image": "debian:sid"}, "base_image_not_supported", ["bookworm", "trixie"]),
        ({"base_image": "python:3.12"}, "base_image_not_supported", ["3.11", "3.13"]),
        ({"base_image": "ubuntu:22.04"}, "base_image_not_supported", ["RUNTIME_UBUNTU_MIRROR"]),
        ({"base_image": "node:20"}, "base_image_not_supported", ["Debian"]),
        (
            {
                "base_image": "debian:bookworm",
                "steps": [{"action": "bun_install", "packages": ["x"]}],
            },
            "invalid_request",
            ["bun"],
        ),
        (
            {
                "base_image": "debian:bookworm",
                "steps": [{"action": "apt_install", "packages": ["a;b"]}],
            },
            "invalid_request",
            ["package"],
        ),
        ({"base_image": "debian:bookworm", "steps": "run"}, "invalid_request", ["steps"]),
        (
            {"base_image": "debian:bookworm", "build_secrets": [{"id": "t", "value": "ab"}]},
            "invalid_request",
            ["shorter"],
        ),
        (
            {"dockerfile": "FROM debian:bookworm\nRUN true\nHEALTHCHECK CMD true\n"},
            "dockerfile_not_supported",
            ["line 3", "HEALTHCHECK"],
        ),
        (
            {"dockerfile": "FROM debian:bookworm AS one\n"},
            "dockerfile_not_supported",
            ["line 1"],
        ),
        (
            {"dockerfile": "FROM debian:bookworm\nRUN --mount=type=cache,target=/x true\n"},
            "dockerfile_not_supported",
            ["line 2"],
        ),
        (
            {
                "base_image": "debian:bookworm",
                "steps": [{"action": "copy", "sources": ["a"], "dst": "/x"}],
            },
            "invalid_request",
            ["not in the build context"],
        ),
        ({"base_image": "nullspace/nothing:latest"}, "template_not_found", ["nothing"]),
    ],
)
def test_builds_that_cannot_be_honoured_are_refused_before_they_exist(api, body, code, words):
    answer = api.post(
        "/v1/templates/builds", {"name": "x", **body}, content_type="application/json"
    )
    assert answer.status_code in (400, 404), answer.content
    error = answer.json()
    assert error["code"] == code
    for word in words:
        assert word in error["error"]
    assert not TemplateBuild.objects.exists()


def test_names_are_checked(api):
    for name, status in (("Bad Name", 400), ("", 400), ("base", 409)):
        answer = api.post(
            "/v1/templates/builds",
            {"name": name, "base_image": "debian:bookworm"},
            content_type="application/json",
        )
        assert answer.status_code == status, name


def test_validate_warns_which_suite_a_python_image_is(api):
    answer = api.post(
        "/v1/templates/validate",
        {"name": "p", "base_image": "python:3.13"},
        content_type="application/json",
    ).json()
    assert answer["valid"] is True and "trixie" in answer["warnings"][0]
    bad = api.post(
        "/v1/templates/validate",
        {"name": "p", "base_image": "python:2.7"},
        content_type="application/json",
    ).json()
    assert bad["valid"] is False and bad["errors"][0]["code"] == "base_image_not_supported"


def test_blobs_are_checked_and_kept_per_team(api, other, runtime):
    data = b"hello context\n"
    sha = hashlib.sha256(data).hexdigest()
    asked = api.post(
        "/v1/templates/blobs/preflight",
        {
            "files": [
                {"path": "a.txt", "entry_type": "file", "sha256": sha, "size_bytes": len(data)},
                {"path": "d", "entry_type": "dir"},
            ]
        },
        content_type="application/json",
    ).json()["files"]
    assert asked[0]["missing"] is True and asked[0]["blob_id"] == f"blob_{sha}"
    assert asked[1]["entry_type"] == "dir"
    wrong = api.put(
        f"/v1/templates/blobs/blob_{sha}", b"other bytes", content_type="application/octet-stream"
    )
    assert wrong.status_code == 400
    put = api.put(f"/v1/templates/blobs/blob_{sha}", data, content_type="application/octet-stream")
    assert put.status_code == 204
    again = api.post(
        "/v1/templates/blobs/preflight",
        {
            "files": [
                {"path": "a.txt", "entry_type": "file", "sha256": sha, "size_bytes": len(data)}
            ]
        },
        content_type="application/json",
    ).json()["files"]
    assert again[0]["missing"] is False
    theirs = other.post(
        "/v1/templates/blobs/preflight",
        {
            "files": [
                {"path": "a.txt", "entry_type": "file", "sha256": sha, "size_bytes": len(data)}
            ]
        },
        content_type="application/json",
    ).json()["files"]
    assert theirs[0]["missing"] is True  # nothing learned about another team's uploads
    assert api.put("/v1/templates/blobs/nope", b"x").status_code == 400


def test_a_waiting_build_is_cancelled_at_once_and_secrets_are_not_kept(api, api_key, project):
    answer = api.post(
        "/v1/templates/builds",
        {
            "name": "later",
            "base_image": "debian:bookworm",
            "steps": [{"action": "run", "command": "true"}],
            "build_secrets": [{"id": "tok", "value": "s3cret-value", "source": "value"}],
        },
        content_type="application/json",
    )
    assert answer.status_code == 202 and answer.json()["status"] == "waiting"
    build = TemplateBuild.objects.get(public_id=answer.json()["build_id"])
    assert "s3cret-value" not in str(build.request) and build.secrets_sealed
    assert "s3cret-value" not in build.secrets_sealed
    cancelled = api.post(
        f"/v1/templates/builds/{build.public_id}/cancel",
        {"reason": "no"},
        content_type="application/json",
    ).json()
    assert cancelled["build"]["status"] == "cancelled"
    assert cancelled["entries"][-1]["kind"] == "cancelled"
    build.refresh_from_db()
    assert build.secrets_sealed == ""
    assert "s3cret-value" not in str(cancelled)
    # Who started and who cancelled it: the key, named from the /v1 face's Actor.
    named = f"api_key:{api_key[1].public_id}"
    assert (build.triggered_by, build.cancel_requested_by) == (named, named)


def test_tags_rename_and_claims(api, ready):
    template, build = ready
    info = api.post(ref_url("demo", "/tags"), {"tags": ["stable"]}, content_type="application/json")
    assert sorted(info.json()["tags"]) == ["default", "stable"]
    listed = api.get(ref_url("demo", "/tags")).json()
    assert {t["tag"]: t["build_id"] for t in listed} == {
        "default": build.public_id,
        "stable": build.public_id,
    }
    bad = api.post(
        ref_url("demo", "/tags"), {"tags": ["no spaces"]}, content_type="application/json"
    )
    assert bad.status_code == 400
    renamed = api.post(
        ref_url("demo", "/rename"), {"new_name": "demo2"}, content_type="application/json"
    )
    assert renamed.json()["name"] == "demo2"
    assert api.get(ref_url("demo")).json()["name"] == "demo2"
    taken = api.post(
        "/v1/templates/builds",
        {"name": "demo", "base_image": "debian:bookworm"},
        content_type="application/json",
    )
    assert taken.status_code == 409 and taken.json()["code"] == "template_name_conflict"
    assert api.delete("/v1/templates/claims/tclm_unknown").status_code == 404
    claim = api.post(
        "/v1/templates/claims", {"template_ref": "fresh"}, content_type="application/json"
    )
    assert claim.status_code == 201 and claim.json()["canonical_ref"] == "acme/fresh:default"
    assert api.delete(f"/v1/templates/claims/{claim.json()['claim_token']}").status_code == 204


def test_a_build_whose_worker_is_gone_for_good_ends_interrupted(api, project, runtime):
    from datetime import timedelta

    from django.utils import timezone

    from console.sandbox_templates import jobs

    template = Template.objects.create(team=project.team, project=project, name="lost")
    build = TemplateBuild.objects.create(
        template=template,
        project=project,
        status=BuildStatus.BUILDING,
        started_at=timezone.now() - timedelta(hours=3),
    )
    fresh = TemplateBuild.objects.create(
        template=template, project=project, status=BuildStatus.BUILDING, started_at=timezone.now()
    )
    jobs.fail_interrupted()
    status = api.get(f"/v1/templates/builds/{build.public_id}").json()
    assert status["build"]["status"] == "error"
    assert status["build"]["error_detail"]["phase"] == "interrupted"
    assert status["entries"][-1]["kind"] == "error"
    fresh.refresh_from_db()
    assert fresh.status == BuildStatus.BUILDING


def test_a_dockerfile_or_steps_can_start_from_a_template(api, ready):
    _, build = ready
    for body in (
        {"dockerfile": "FROM acme/demo\nRUN true\n"},
        {"dockerfile": "FROM demo:default\nRUN true\n"},
        {"base_image": "nullspace/demo:latest", "steps": [{"action": "run", "command": "true"}]},
        {"base_image": f"demo:{build.public_id}"},
    ):
        plan = api.post(
            "/v1/templates/plan", {"name": "child", **body}, content_type="application/json"
        )
        assert plan.status_code == 200, (body, plan.content)
        assert plan.json()["build_plan"]["parent_build_id"] == build.public_id
    missing = api.post(
        "/v1/templates/plan",
        {"name": "child", "dockerfile": "FROM demo:nope\n"},
        content_type="application/json",
    )
    assert missing.status_code == 404 and missing.json()["code"] == "template_not_found"


def test_dockerfile_start_command_is_entrypoint_then_cmd(api):
    body = {
        "name": "web",
        "dockerfile": 'FROM debian:bookworm\nENTRYPOINT ["python3", "-m"]\nCMD ["http.server", "9000"]\n'
        "EXPOSE 9000\nLABEL team=eval\n",
    }
    answer = api.post("/v1/templates/builds", body, content_type="application/json").json()
    build = TemplateBuild.objects.get(public_id=answer["build_id"])
    from console.sandbox_templates import plan as plans

    plan = plans.from_request(build.template.team, build.request)
    assert plan.runtime["start_cmd"] == "python3 -m http.server 9000"
    assert plan.oci_metadata == {
        "labels": {"team": "eval"},
        "exposed_ports": ["9000/tcp"],
        "volumes": [],
    }


def test_a_template_a_warm_pool_uses_cannot_be_deleted(api, ready, project):
    template, _build = ready
    pool = WarmPool.objects.create(
        project=project,
        name="p",
        template_ref="demo:default",
        template="demo",
        min_ready=0,
        max_ready=1,
    )
    refused = api.delete(ref_url("demo"))
    assert refused.status_code == 409 and refused.json()["code"] == "template_in_use"
    assert pool.public_id in refused.json()["error"]
    pool.delete()
    assert api.delete(ref_url("demo")).status_code in (200, 204)
    assert not Template.objects.filter(pk=template.pk).exists()
