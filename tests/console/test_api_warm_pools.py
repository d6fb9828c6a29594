"""/v1/template-warm-pools and `POST /v1/sandboxes` with `warm_pool`, through the Django
test client on real local sandboxes. The worker's part (console/warm_pools/filler.py)
is called directly, as a job would, so each step is deterministic."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nullspace.template_warm_pool import _warm_pool_info_from_data
from nullspace.types import SandboxInfo

from console.jobs.models import Job
from console.models import (
    AuditEvent,
    LifecycleEvent,
    Sandbox,
    SandboxStatus,
    Template,
    TemplateBuild,
    TemplateTag,
    WarmPool,
)
from console.sandbox_templates.models import BuildStatus
from console.warm_pools import filler, jobs, rollout, validation

pytestmark = pytest.mark.django_db


def post(client, url, body=None):
    return client.post(
        url, data=json.dumps(body) if body is not None else "", content_type="application/json"
    )


def patch(client, url, body):
    return client.patch(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def pool(runtime, api):
    """A pool of two `base` sandboxes, filled."""
    made = post(
        api,
        "/v1/template-warm-pools",
        {"template_ref": "base", "name": "small", "min_ready": 2, "max_ready": 3,
         "resources": {"vcpus": 2, "memory_mb": 512}, "labels": {"team": "web"}},
    )  # fmt: skip
    assert made.status_code == 201, made.content
    info = made.json()
    filler.work_on(WarmPool.objects.get(public_id=info["id"]).pk)
    return info


def pool_row(info) -> WarmPool:
    return WarmPool.objects.get(public_id=info["id"])


def inventory(info) -> set[str]:
    return set(
        Sandbox.objects.filter(
            warm_pool__public_id=info["id"], status=SandboxStatus.RUNNING
        ).values_list("public_id", flat=True)
    )


def checkout(api, info, mode=None, **body):
    spec = {"id": info["id"]} | ({"mode": mode} if mode else {})
    return post(api, "/v1/sandboxes", {"template": "base", "warm_pool": spec, **body})


def test_pool_shape_is_what_the_client_reads(pool, api):
    parsed = _warm_pool_info_from_data(pool)
    assert (parsed.name, parsed.template_ref, parsed.min_ready, parsed.max_ready) == (
        "small", "base", 2, 3,
    )  # fmt: skip
    got = api.get(f"/v1/template-warm-pools/{pool['id']}").json()
    status = _warm_pool_info_from_data(got).status
    assert (status.target, status.ready, status.warming) == (2, 2, 0)
    assert got["public_status"] == "ready"


def test_pool_sandboxes_are_hidden_until_checked_out(pool, api):
    held = inventory(pool)
    assert len(held) == 2
    listed = {s["id"] for s in api.get("/v1/sandboxes").json()["items"]}
    assert not listed & held
    assert api.get(f"/v1/sandboxes/{next(iter(held))}").status_code == 404


def test_prefer_checks_out_a_ready_sandbox_with_the_request_applied(pool, api):
    held = inventory(pool)
    answer = checkout(
        api, pool, "prefer", envs={"GREETING": "hi"}, metadata={"job": "7"}, timeout_ms=60_000,
        cwd="/workspace/app",
    )  # fmt: skip
    assert answer.status_code == 201, answer.content
    info = answer.json()
    assert info["id"] in held
    assert info["warm_pool_checkout"] == {
        "source": "ready_instance", "hit": True, "id": pool["id"], "mode": "prefer",
        "wait_ms": info["warm_pool_checkout"]["wait_ms"],
    }  # fmt: skip
    parsed = SandboxInfo(**{k: v for k, v in info.items() if k in SandboxInfo.__dataclass_fields__})
    assert parsed.warm_pool_checkout.hit and parsed.metadata == {"job": "7"}
    assert info["timeout_ms"] == 60_000 and info["traffic_access_token"]
    ran = post(api, f"/v1/sandboxes/{info['id']}/exec", {"command": "echo $GREETING; pwd",
               "shell": True, "timeout_secs": 30, "background": False}).json()  # fmt: skip
    assert ran["stdout"].split() == ["hi", "/workspace/app"]
    # It is the caller's now: listed, and out of the pool, which refills behind it.
    assert info["id"] in {s["id"] for s in api.get("/v1/sandboxes").json()["items"]}
    assert info["id"] not in inventory(pool)
    filler.work_on(pool_row(pool).pk)
    assert len(inventory(pool)) == 2
    status = api.get(f"/v1/template-warm-pools/{pool['id']}").json()["status"]
    assert status["claimed"] == 1 and status["ready"] == 2
    events = LifecycleEvent.objects.filter(sandbox_id=info["id"], reason="api")
    assert {e.status for e in events} == {"requested", "succeeded"}
    assert all(e.metadata["warm_pool_id"] == pool["id"] for e in events)


def test_require_on_an_empty_pool_is_unavailable_and_prefer_falls_back(pool, api):
    for _ in range(2):
        assert checkout(api, pool, "require").status_code == 201
    refused = checkout(api, pool, "require")
    assert (refused.status_code, refused.json()["code"]) == (409, "warm_pool_unavailable")
    cold = checkout(api, pool, "prefer")
    assert cold.status_code == 201
    assert cold.json()["warm_pool_checkout"]["source"] == "cold_create"
    bypassed = checkout(api, pool, "bypass")
    assert bypassed.json()["warm_pool_checkout"] == {
        "source": "bypassed", "hit": False, "id": pool["id"], "mode": "bypass",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"memory_mb": 1024}, "memory_mb"),
        ({"vcpus": 1}, "vcpus"),
        ({"internet_access": False}, "network"),
        ({"network": {"deny_out": ["10.0.0.0/8"]}}, "network"),
        ({"volumes": [{"ref": "v", "mount_path": "/data", "read_only": False}]}, "volumes"),
    ],
)
def test_what_cannot_apply_to_a_started_sandbox_is_refused(pool, api, body, field):
    refused = checkout(api, pool, "prefer", **body)
    assert refused.status_code == 400, refused.content
    assert refused.json()["details"]["field"] == field
    assert len(inventory(pool)) == 2  # nothing was taken


def test_scale_drain_enable_and_delete(pool, api):
    base = f"/v1/template-warm-pools/{pool['id']}"
    scaled = patch(api, base, {"min_ready": 1, "max_ready": 1}).json()
    assert (scaled["min_ready"], scaled["max_ready"]) == (1, 1)
    filler.work_on(pool_row(pool).pk)
    assert len(inventory(pool)) == 1  # trimmed to max_ready
    assert post(api, base + "/drain").json()["state"] == "draining"
    filler.work_on(pool_row(pool).pk)
    drained = api.get(base).json()
    assert drained["state"] == "disabled" and drained["status"]["ready"] == 0
    assert not inventory(pool)
    assert post(api, base + "/enable").json()["state"] == "enabled"
    filler.work_on(pool_row(pool).pk)
    assert len(inventory(pool)) == 1
    assert api.delete(base).status_code == 200
    assert api.get(base).status_code == 404
    filler.work_on(pool_row(pool).pk)
    assert not inventory(pool)
    assert pool["id"] not in {p["id"] for p in api.get("/v1/template-warm-pools").json()["items"]}
    audited = list(
        AuditEvent.objects.filter(target_id=pool["id"])
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert audited == [
        "warm_pool.created", "warm_pool.updated", "warm_pool.drain_requested",
        "warm_pool.enabled", "warm_pool.deleted",
    ]  # fmt: skip


def test_bad_input_is_refused_with_stable_codes(runtime, api):
    url = "/v1/template-warm-pools"
    base = {"template_ref": "base", "name": "p", "min_ready": 1, "max_ready": 2}
    cases = [
        ({**base, "min_ready": 3}, 400, "invalid_request"),
        ({**base, "max_ready": 999}, 400, "invalid_request"),
        ({**base, "template_ref": "nope"}, 404, "template_not_found"),
        # A builtin has no builds or tags: it stays pinned (docs/warm-pools.md).
        ({**base, "version_policy": "track_tag", "track_tag": "stable"}, 400, "invalid_request"),
        ({**base, "colour": "red"}, 400, "invalid_request"),
        ({**base, "resources": {"vcpus": 0}}, 400, "invalid_request"),
        ({"name": "p"}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        answer = post(api, url, body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
    assert post(api, url, base).status_code == 201
    again = post(api, url, base)
    assert (again.status_code, again.json()["code"]) == (409, "warm_pool_conflict")


def test_another_projects_pool_is_not_found(pool, client, other_api_key):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {other_api_key[0]}"
    base = f"/v1/template-warm-pools/{pool['id']}"
    assert client.get(base).json()["code"] == "warm_pool_not_found"
    assert post(client, base + "/drain").status_code == 404
    assert patch(client, base, {"min_ready": 0}).status_code == 404
    assert client.delete(base).status_code == 404
    assert client.get("/v1/template-warm-pools").json() == {"items": []}
    taken = post(client, "/v1/sandboxes", {"template": "base", "warm_pool": {"id": pool["id"]}})
    assert (taken.status_code, taken.json()["code"]) == (404, "warm_pool_not_found")
    assert len(inventory(pool)) == 2


def test_sweep_asks_for_a_fill_only_when_one_is_needed(pool, api):
    assert jobs.sweep() == []
    assert checkout(api, pool).status_code == 201
    assert jobs.sweep() == [pool_row(pool).pk]


def test_list_filters(pool, api):
    def ids(**params):
        return [p["id"] for p in api.get("/v1/template-warm-pools", params).json()["items"]]

    assert ids(template="nullspace/base:latest") == [pool["id"]]
    assert ids(template="other") == []
    assert ids(label="team=web") == [pool["id"]] and ids(label="team=ops") == []
    assert ids(status="ready") == [pool["id"]] and ids(status="warming") == []
    assert ids(state="enabled") == [pool["id"]] and ids(state="deleted") == []
    assert api.get("/v1/template-warm-pools", {"status": "bogus"}).status_code == 400
    assert api.get("/v1/template-warm-pools", {"label": "novalue"}).status_code == 400


def test_an_update_of_size_replaces_the_ready_sandboxes(pool, api):
    before = inventory(pool)
    patch(api, f"/v1/template-warm-pools/{pool['id']}", {"resources": {"memory_mb": 640}})
    filler.work_on(pool_row(pool).pk)
    after = inventory(pool)
    assert len(after) == 2 and not after & before
    assert set(Sandbox.objects.filter(public_id__in=after).values_list("memory_mb", flat=True)) == {
        640
    }
    assert pool_row(pool).expired_count == 2
    # A create asking for the old size is refused, one for the new size is served.
    assert checkout(api, pool, "require", memory_mb=512).status_code == 400
    assert checkout(api, pool, "require", memory_mb=640).status_code == 201


def test_stale_sandboxes_are_replaced(pool, api):
    patch(api, f"/v1/template-warm-pools/{pool['id']}", {"stale_after_seconds": 60})
    old = inventory(pool)
    Sandbox.objects.filter(public_id__in=old).update(
        started_at=timezone.now() - timedelta(minutes=5)
    )
    # A stale sandbox is never handed out; the worker replaces it.
    assert checkout(api, pool, "require").json()["code"] == "warm_pool_unavailable"
    filler.work_on(pool_row(pool).pk)
    assert len(inventory(pool)) == 2 and not inventory(pool) & old
    assert pool_row(pool).expired_count == 2


def test_an_idle_pool_lets_its_sandboxes_go_until_asked_again(pool, api):
    patch(api, f"/v1/template-warm-pools/{pool['id']}", {"idle_timeout_seconds": 60})
    WarmPool.objects.filter(public_id=pool["id"]).update(
        last_demand_at=timezone.now() - timedelta(minutes=5)
    )
    assert jobs.sweep() == [pool_row(pool).pk]  # the sweep notices an idle pool
    filler.work_on(pool_row(pool).pk)
    assert inventory(pool) == set()
    assert jobs.sweep() == []
    assert checkout(api, pool, "prefer").json()["warm_pool_checkout"]["source"] == "cold_create"
    filler.work_on(pool_row(pool).pk)  # the miss woke it
    assert len(inventory(pool)) == 2


def test_a_fill_that_hits_the_quota_degrades_the_pool(runtime, api, project):
    project.max_running_sandboxes = 1
    project.save()
    made = post(api, "/v1/template-warm-pools", {"template_ref": "base", "name": "q",
                "min_ready": 1, "max_ready": 1}).json()  # fmt: skip
    assert post(api, "/v1/sandboxes", {"template": "base"}).status_code == 201
    filler.work_on(pool_row(made).pk)
    got = api.get(f"/v1/template-warm-pools/{made['id']}").json()
    assert got["degraded_reason"] == "quota_exceeded" and got["public_status"] == "degraded"
    assert (got["status"]["failed"], got["status"]["unavailable"]) == (1, 1)
    assert "quota_exceeded" in got["last_error"]
    assert pool_row(made).next_fill_at is not None  # backing off, not retrying hot
    # The pool's own sandbox counts too: a cold create at the limit says so.
    project.max_running_sandboxes = 2
    project.save()
    assert post(api, f"/v1/template-warm-pools/{made['id']}/reconcile").status_code == 200
    filler.work_on(pool_row(made).pk)
    assert len(inventory(made)) == 1
    refused = post(api, "/v1/sandboxes", {"template": "base"}).json()
    assert refused["code"] == "quota_exceeded" and refused["details"]["warm_pool_sandboxes"] == 1


def test_one_worker_at_a_time_fills_a_pool(runtime, api):
    made = post(api, "/v1/template-warm-pools", {"template_ref": "base", "name": "l",
                "min_ready": 1, "max_ready": 1}).json()  # fmt: skip
    row = pool_row(made)
    WarmPool.objects.filter(pk=row.pk).update(
        filler="another", fill_lease_until=timezone.now() + timedelta(minutes=1)
    )
    assert filler.work_on(row.pk) is False and inventory(made) == set()
    # A lease whose holder went silent runs out, and the pool is filled after all.
    WarmPool.objects.filter(pk=row.pk).update(
        fill_lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert filler.work_on(row.pk) is True and len(inventory(made)) == 1
    assert pool_row(made).filler == ""


POOL_FIELDS = sorted(validation.CREATE_KEYS) + ["colour"]
fuzz_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(
            ["base", "nullspace/base:latest", "prefer", "track_tag", "\ud800", "x" * 300]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_generated_bodies_never_get_a_5xx(runtime, api):
    """Pool create and update, and a create's `warm_pool`, with generated values: always a
    4xx envelope or a success, never a server error, and never a
    cold create here."""
    first = post(api, "/v1/template-warm-pools",
                 {"template_ref": "base", "name": "f", "min_ready": 0, "max_ready": 1}).json()  # fmt: skip
    seen: list[int] = []

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=st.dictionaries(st.sampled_from(POOL_FIELDS), fuzz_values, max_size=6),
           spec=fuzz_values, how=st.sampled_from(["create", "patch", "checkout"]))  # fmt: skip
    def one(body, spec, how) -> None:
        if how == "create":
            answer = post(api, "/v1/template-warm-pools", body)
        elif how == "patch":
            answer = patch(api, f"/v1/template-warm-pools/{first['id']}", body)
        else:
            if spec is None or isinstance(spec, dict):  # (null would be a plain create)
                spec = {**(spec or {}), "mode": "require"}  # a miss answers; nothing starts cold
            answer = post(api, "/v1/sandboxes", {"template": "base", "warm_pool": spec})
        seen.append(answer.status_code)
        assert answer.status_code < 500, (how, body, spec, answer.content)
        if answer.status_code >= 400:
            assert answer.json()["code"]

    one()
    assert any(code >= 400 for code in seen)
    assert not Sandbox.objects.exclude(warm_pool__isnull=False).exists()


def test_a_builtins_spellings_are_one_template(runtime, api):
    made = post(api, "/v1/template-warm-pools", {"template_ref": "nullspace/base:latest",
                "name": "spelled", "min_ready": 1, "max_ready": 1}).json()  # fmt: skip
    assert (made["template_ref"], made["resolved_template"]) == ("nullspace/base:latest", "base")
    filler.work_on(pool_row(made).pk)
    assert checkout(api, made, "require").json()["warm_pool_checkout"]["hit"] is True


# --- custom templates: pinned builds, tracked tags, rollouts (docs/warm-pools.md) -------


@pytest.fixture
def demo(project):
    """A team template `demo` with two ready builds (rows only: these tests check what the
    pool records, the live test in tests/console/test_cli_warm_pools.py runs builds):
    `default` and `stable` on the first."""
    template = Template.objects.create(team=project.team, project=project, name="demo")
    one, two = (
        TemplateBuild.objects.create(
            template=template, project=project, status=BuildStatus.READY, layers=["a" * 32]
        )
        for _ in range(2)
    )
    for tag in ("default", "stable"):
        TemplateTag.objects.create(template=template, tag=tag, build=one)
    return template, one, two


def make_pool(api, **body):
    return post(api, "/v1/template-warm-pools",
                {"name": "p", "min_ready": 0, "max_ready": 1, **body})  # fmt: skip


def test_a_custom_template_pool_pins_the_build_its_ref_names(api, demo):
    template, one, two = demo
    made = make_pool(api, template_ref="demo")
    assert made.status_code == 201, made.content
    info = made.json()
    assert (info["version_policy"], info["track_tag"]) == ("pinned_build", None)
    assert (info["resolved_template"], info["resolved_template_build_id"]) == (
        "demo", one.public_id,
    )  # fmt: skip
    assert pool_row(info).template == f"acme/demo:{one.public_id}"
    parsed = _warm_pool_info_from_data(info)
    assert parsed.rollout_status.current_identity.resolved_template_build_id == one.public_id
    # The tag moves; a pinned pool stays where it was, and follows nothing.
    assert post(api, f"/v1/templates/builds/{two.public_id}/promote", {"tag": "default"}
                ).status_code == 200  # fmt: skip
    rollout.follow_tags(template.pk)
    again = api.get(f"/v1/template-warm-pools/{info['id']}").json()
    assert again["resolved_template_build_id"] == one.public_id
    assert again["rollout_generation"] == 1
    # A ref naming one build pins that one.
    by_id = make_pool(api, template_ref=f"demo:{two.public_id}", name="q").json()
    assert by_id["resolved_template_build_id"] == two.public_id


def test_track_tag_follows_the_tag_and_records_the_rollout(api, demo):
    template, one, two = demo
    info = make_pool(api, template_ref="demo", version_policy="track_tag",
                     track_tag="stable").json()  # fmt: skip
    assert (info["version_policy"], info["track_tag"]) == ("track_tag", "stable")
    assert info["resolved_template_build_id"] == one.public_id
    generation = pool_row(info).generation
    # `tag assign` moves stable: the move queues the pools' job, which rolls the pool over.
    moved = post(api, f"/v1/templates/refs/demo:{two.public_id}/tags", {"tags": ["stable"]})
    assert moved.status_code == 200, moved.content
    assert Job.objects.filter(kind="warm_pools.follow_tags", payload={"template": template.pk})
    rollout.follow_tags(template.pk)
    got = api.get(f"/v1/template-warm-pools/{info['id']}").json()
    assert got["resolved_template_build_id"] == two.public_id
    assert got["previous_resolved_template_build_id"] == one.public_id
    assert got["previous_resolved_template"] == f"acme/demo:{one.public_id}"
    assert got["rollout_generation"] == 2 and pool_row(info).generation == generation + 1
    status = _warm_pool_info_from_data(got).rollout_status  # strict: exactly its keys
    assert (status.track_tag, status.rollout_generation) == ("stable", 2)
    assert status.current_identity.resolved_template_build_id == two.public_id
    audited = AuditEvent.objects.filter(action="warm_pool.rolled_out", target_id=info["id"])
    assert audited.get().metadata["build"] == two.public_id
    # Again: nothing moved, nothing recorded.
    rollout.follow_tags(template.pk)
    assert api.get(f"/v1/template-warm-pools/{info['id']}").json()["rollout_generation"] == 2
    # Back to pinned: the pool keeps the build it has and stops following.
    pinned = patch(api, f"/v1/template-warm-pools/{info['id']}", {"version_policy": "pinned_build"})
    assert (pinned.json()["track_tag"], pinned.json()["resolved_template_build_id"]) == (
        None, two.public_id,
    )  # fmt: skip


def test_tracking_is_refused_when_it_cannot_be_honoured(api, demo):
    cases = [
        ({"template_ref": "demo", "version_policy": "track_tag", "track_tag": "nope"},
         404, "template_tag_not_found"),
        ({"template_ref": "demo", "version_policy": "track_tag"}, 400, "invalid_request"),
        ({"template_ref": "demo", "track_tag": "stable"}, 400, "invalid_request"),
        ({"template_ref": "demo:default", "version_policy": "track_tag", "track_tag": "stable"},
         400, "invalid_request"),
        ({"template_ref": "base", "version_policy": "track_tag", "track_tag": "stable"},
         400, "invalid_request"),
        ({"template_ref": "demo", "version_policy": "track_tag", "track_tag": "no spaces"},
         400, "invalid_request"),
        ({"template_ref": "demo", "version_policy": "latest"}, 400, "invalid_request"),
    ]  # fmt: skip
    for body, status, code in cases:
        answer = make_pool(api, **body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
    assert not WarmPool.objects.exists()


def test_another_teams_template_is_not_found(api, demo, client, other_api_key):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {other_api_key[0]}"
    for body in ({"template_ref": "demo"}, {"template_ref": "acme/demo"},
                 {"template_ref": "demo", "version_policy": "track_tag", "track_tag": "stable"}):  # fmt: skip
        answer = make_pool(client, **body)
        assert (answer.status_code, answer.json()["code"]) == (404, "template_not_found"), body


def test_a_checkout_asks_for_the_pools_template_not_another_build(runtime, api, demo):
    _template, one, two = demo
    info = make_pool(api, template_ref="demo").json()
    asked = post(api, "/v1/sandboxes", {"template": f"demo:{two.public_id}",
                 "warm_pool": {"id": info["id"], "mode": "require"}})  # fmt: skip
    assert (asked.status_code, asked.json()["code"]) == (400, "invalid_request")
    assert "template" in asked.json()["error"]


def test_a_claim_reads_the_pools_generation_itself(pool, api):
    """A rollout recorded while a checkout is under way (its pool row read before) still
    keeps the old generation's sandboxes from being handed out (docs/warm-pools.md)."""
    from django.db.models import F

    from console.actor import Actor
    from console.sandboxes import service as sandboxes
    from console.warm_pools import checkout as checkouts

    read_before = pool_row(pool)
    WarmPool.objects.filter(pk=read_before.pk).update(generation=F("generation") + 1)
    fields = sandboxes.validated_create_fields(
        read_before.project,
        snapshot=None,
        **{k: None for k in checkouts._VALIDATED} | {"auto_resume": False, "internet_access": True},
    )
    actor = Actor.key(pool_row(pool).created_by_key)
    assert checkouts._claim(read_before, fields, actor=actor) is None
    assert len(inventory(pool)) == 2  # still the pool's, for the worker to replace
    filler.work_on(read_before.pk)
    assert checkouts._claim(pool_row(pool), fields, actor=actor) is not None
