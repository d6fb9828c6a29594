"""/v1 sandboxes, exec, processes, snapshots and lifecycle through the Django test client,
on real local sandboxes (no network namespace: these tests need no ports)."""

from __future__ import annotations

import json
import time

import pytest
from nullspace.types import LifecycleEventListResponse, ProcessInfo, SandboxMetrics, SnapshotInfo

from console.actor import Actor
from console.models import IdempotencyRecord, Sandbox
from console.runtime import get_driver

pytestmark = pytest.mark.django_db

INFO_KEYS = {
    "id", "status", "config", "template", "metadata", "created_at", "started_at", "timeout_ms",
    "timeout_at", "expires_at", "timeout_action", "cwd", "snapshot_id", "internet_access",
    "network",
}  # fmt: skip


@pytest.fixture
def made(runtime, api):
    """Create sandboxes through the API (the runtime fixture destroys them at the end)."""

    def make(**body):
        response = post(api, "/v1/sandboxes", {"template": "base", **body})
        assert response.status_code == 201, response.content
        return response.json()

    return make


def post(client, url, body=None, **headers):
    return client.post(
        url, data=json.dumps(body) if body is not None else "", content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    )  # fmt: skip


def run(api, sandbox_id, command, **extra):
    body = {"command": command, "shell": True, "timeout_secs": 10, "background": False, **extra}
    return post(api, f"/v1/sandboxes/{sandbox_id}/exec", body)


def test_create_returns_sandbox_info_with_token_once(made, api):
    info = made(
        envs={"GREETING": "hi"}, metadata={"team": "eval"}, cwd="/workspace", network=None,
        desktop=None, volumes=None, lifecycle={"on_timeout": "pause"}, auto_resume=True,
    )  # fmt: skip
    assert set(info) == INFO_KEYS | {"traffic_access_token"}
    assert info["status"] == "running"
    assert info["config"] == {"vcpus": 2, "memory_mb": 512}
    assert info["timeout_action"] == "hibernate"
    assert info["traffic_access_token"].startswith("nst_")
    got = api.get(f"/v1/sandboxes/{info['id']}").json()
    assert set(got) == INFO_KEYS
    result = run(api, info["id"], "echo $GREETING; pwd").json()
    assert result["stdout"].split() == ["hi", "/workspace"]
    assert result["exit_code"] == 0


def test_bad_input_gets_clear_errors(runtime, api, settings):
    bad_json = api.post("/v1/sandboxes", data="{nope", content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.json()["code"] == "invalid_request"
    unknown = post(api, "/v1/sandboxes", {"template": "no-such-thing"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "template_not_found"
    settings.MAX_SANDBOX_TIMEOUT_MS = 60_000
    too_long = post(api, "/v1/sandboxes", {"timeout_ms": 120_000})
    assert too_long.json()["code"] == "invalid_request"
    assert "60000" in too_long.json()["error"]
    assert not Sandbox.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"network": {"allow_outt": ["1.2.3.4/32"]}}, 400, "invalid_request", "allow_outt"),
        ({"network": {"deny_out": ["not-a-cidr"]}}, 400, "invalid_request", "not-a-cidr"),
        ({"network": {"deny_out": ["fd00::/8"]}}, 400, "invalid_request", "IPv6"),
        ({"network": {"egress": {"rate_limit": {"pps": 5}}}}, 400, "invalid_request", "rate"),
        ({"warm_pool": {"id": "twp_x", "mode": "require"}}, 404, "warm_pool_not_found", "twp_x"),
        ({"warm_pool": {"mode": "require"}}, 400, "invalid_request", "warm_pool.id"),
        ({"warm_pool": {"id": "twp_x", "wait_ms": 40_000}}, 400, "invalid_request", "wait_ms"),
        ({"warm_pool": {"id": "twp_x"}}, 404, "warm_pool_not_found", "twp_x"),
        ({"memory_mb": 8}, 400, "invalid_request", "memory_mb"),
        ({"disk_mb": 10**9}, 400, "invalid_request", "disk_mb"),
        ({"desktop": {"dpi": 96}}, 400, "invalid_request", "desktop template"),
    ],
)
def test_what_cannot_be_honoured_is_refused(runtime, api, body, status, code, words):
    refused = post(api, "/v1/sandboxes", {"template": "base", **body})
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.content
    assert words in refused.json()["error"]
    assert not Sandbox.objects.exists()


def test_quota_counts_running_not_paused(made, api, project):
    project.max_running_sandboxes = 1
    project.save()
    first = made()
    refused = post(api, "/v1/sandboxes", {"template": "base"})
    assert refused.status_code == 429
    assert refused.json()["code"] == "quota_exceeded"
    assert post(api, f"/v1/sandboxes/{first['id']}/hibernate").status_code == 200
    second = made()
    # Resuming the paused one would pass the limit: refused, and it stays paused.
    blocked = post(api, f"/v1/sandboxes/{first['id']}/resume")
    assert blocked.json()["code"] == "quota_exceeded"
    assert api.get(f"/v1/sandboxes/{first['id']}").json()["status"] == "paused"
    assert api.delete(f"/v1/sandboxes/{second['id']}").status_code == 200
    assert post(api, f"/v1/sandboxes/{first['id']}/resume").json()["status"] == "running"


def test_idempotent_create_replays_first_answer(runtime, api):
    body = {"template": "base", "metadata": {"n": 1}}
    first = post(api, "/v1/sandboxes", body, **{"Idempotency-Key": "k-1"})
    again = post(api, "/v1/sandboxes", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Sandbox.objects.count() == 1
    # The raw token is never stored; a replay carries a fresh one.
    record = IdempotencyRecord.objects.get()
    assert "traffic_access_token" not in record.response_body
    assert again.json()["traffic_access_token"] != first.json()["traffic_access_token"]
    other = post(api, "/v1/sandboxes", body, **{"Idempotency-Key": "k-2"})
    assert other.json()["id"] != first.json()["id"]
    for sandbox in Sandbox.objects.all():
        get_driver().destroy(sandbox.public_id)


def test_read_only_key_cannot_change_anything(made, client, read_key):
    info = made()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {read_key[0]}"
    assert client.get(f"/v1/sandboxes/{info['id']}").status_code == 200
    for url in (
        "/v1/sandboxes",
        f"/v1/sandboxes/{info['id']}/exec",
        f"/v1/sandboxes/{info['id']}/hibernate",
    ):
        response = post(client, url, {"command": "true"})
        assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert client.delete(f"/v1/sandboxes/{info['id']}").json()["code"] == "permission_denied"
    assert Sandbox.objects.get(public_id=info["id"]).status == "running"


def test_list_filters_paginates_and_projects(made, api):
    a = made(metadata={"team": "eval"})
    b = made(metadata={"team": "prod"})
    post(api, f"/v1/sandboxes/{b['id']}/hibernate")
    page = api.get("/v1/sandboxes", {"metadata": json.dumps({"team": "eval"})}).json()
    assert [s["id"] for s in page["items"]] == [a["id"]]
    paused = api.get("/v1/sandboxes", {"state": "paused"}).json()["items"]
    assert [s["id"] for s in paused] == [b["id"]] and paused[0]["snapshot_id"].startswith("snap_")
    both = api.get("/v1/sandboxes", {"state": "running,paused", "template": "base"}).json()
    assert {s["id"] for s in both["items"]} == {a["id"], b["id"]}
    first = api.get("/v1/sandboxes", {"limit": 1}).json()
    assert first["has_next"] and len(first["items"]) == 1
    second = api.get("/v1/sandboxes", {"limit": 1, "next_token": first["next_token"]}).json()
    assert not second["has_next"] and second["items"][0]["id"] != first["items"][0]["id"]
    slim = api.get("/v1/sandboxes", {"fields": "id,status"}).json()["items"]
    assert all(set(s) == {"id", "status"} for s in slim)
    assert api.get(f"/v1/sandboxes/{a['id']}", {"fields": "id"}).json() == {"id": a["id"]}
    bad = api.get("/v1/sandboxes", {"fields": "id,secret"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_fields"
    assert api.get("/v1/sandboxes", {"state": "sleeping"}).json()["code"] == "invalid_request"
    assert api.get("/v1/sandboxes", {"template": "other"}).json()["items"] == []


def test_exec_foreground_background_and_processes(made, api):
    sid = made()["id"]
    failed = run(api, sid, "echo out; echo err >&2; exit 3").json()
    assert failed == {"exit_code": 3, "stdout": "out\n", "stderr": "err\n", "pid": failed["pid"]}
    argv = post(
        api,
        f"/v1/sandboxes/{sid}/exec",
        {
            "command": "printf",
            "args": ["%s-%s", "a b", "c"],
            "timeout_secs": 5,
            "background": False,
        },
    )
    assert argv.json()["stdout"] == "a b-c"
    started = post(
        api,
        f"/v1/sandboxes/{sid}/exec",
        {
            "command": "read line; echo got:$line",
            "shell": True,
            "timeout_secs": 30,
            "background": True,
        },
    )
    pid = started.json()["pid"]
    listed = [ProcessInfo(**p) for p in api.get(f"/v1/sandboxes/{sid}/processes").json()]
    assert any(p.pid == pid and p.running for p in listed)
    assert (
        post(api, f"/v1/sandboxes/{sid}/processes/{pid}/stdin", {"data": "hello\n"}).status_code
        == 204
    )
    logs = _wait_logs(api, sid, pid)
    assert logs["stdout"] == "got:hello\n" and logs["exit_code"] == 0
    sleeper = post(
        api,
        f"/v1/sandboxes/{sid}/exec",
        {"command": "sleep 60", "shell": True, "timeout_secs": 30, "background": True},
    ).json()["pid"]
    assert post(api, f"/v1/sandboxes/{sid}/processes/{sleeper}/kill").status_code == 204
    _wait_logs(api, sid, sleeper)
    missing = api.get(f"/v1/sandboxes/{sid}/processes/999999/logs")
    assert missing.status_code == 404 and missing.json()["code"] == "process_not_found"


def _wait_logs(api, sid, pid):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = api.get(f"/v1/sandboxes/{sid}/processes/{pid}/logs").json()
        if logs["exit_code"] is not None:
            return logs
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not end")


def test_exec_past_its_timeout_is_killed(made, api):
    sid = made()["id"]
    began = time.monotonic()
    response = run(api, sid, "echo started; sleep 30", timeout_secs=1)
    assert time.monotonic() - began < 10
    assert response.status_code == 504 and response.json()["code"] == "exec_timeout"
    pid = response.json()["details"]["pid"]
    processes = {p["pid"]: p for p in api.get(f"/v1/sandboxes/{sid}/processes").json()}
    assert processes[pid]["running"] is False


def test_pause_resume_and_paused_routes(made, api):
    sid = made()["id"]
    run(api, sid, "echo kept > state.txt")
    paused = post(api, f"/v1/sandboxes/{sid}/hibernate")
    snap = SnapshotInfo(**paused.json())
    assert snap.sandbox_id == sid and snap.size_bytes > 0
    # A double pause is harmless: the same pause snapshot comes back.
    assert post(api, f"/v1/sandboxes/{sid}/hibernate").json()["id"] == snap.id
    info = api.get(f"/v1/sandboxes/{sid}").json()
    assert info["status"] == "paused" and info["snapshot_id"] == snap.id
    refused = run(api, sid, "true")
    assert refused.status_code == 409 and refused.json()["code"] == "sandbox_not_ready"
    assert snap.id in refused.json()["suggested_action"]
    assert api.get(f"/v1/sandboxes/{sid}/processes").json()["code"] == "sandbox_not_ready"
    in_use = api.delete(f"/v1/snapshots/{snap.id}")
    assert in_use.status_code == 409 and in_use.json()["code"] == "snapshot_in_use"
    resumed = post(api, f"/v1/sandboxes/{snap.id}/resume").json()
    # The client's contract: a resumed sandbox has a new id and the paused one is gone.
    new_id = resumed["id"]
    assert new_id != sid and new_id.startswith("sb_") and resumed["status"] == "running"
    assert api.get(f"/v1/sandboxes/{sid}").json()["code"] == "sandbox_not_found"
    assert post(api, f"/v1/sandboxes/{new_id}/resume").json()["id"] == new_id
    assert run(api, new_id, "cat state.txt").json()["stdout"] == "kept\n"
    listed = api.get("/v1/sandboxes", {"state": "paused,running"}).json()["items"]
    assert new_id in {s["id"] for s in listed} and sid not in {s["id"] for s in listed}


def test_fork_and_snapshots_restore_the_workspace(made, api):
    sid = made(metadata={"team": "eval"})["id"]
    run(api, sid, "echo original > data.txt")
    fork = post(api, f"/v1/sandboxes/{sid}/fork", **{"Idempotency-Key": "f-1"})
    assert fork.status_code == 201
    child = fork.json()["id"]
    assert child != sid and fork.json()["metadata"] == {"team": "eval"}
    assert run(api, child, "cat data.txt").json()["stdout"] == "original\n"
    created = post(api, f"/v1/sandboxes/{sid}/snapshots", **{"Idempotency-Key": "s-1"})
    assert created.status_code == 201
    snap = SnapshotInfo(**created.json())
    assert (
        post(api, f"/v1/sandboxes/{sid}/snapshots", **{"Idempotency-Key": "s-1"}).json()["id"]
        == snap.id
    )
    assert [SnapshotInfo(**s).id for s in api.get("/v1/snapshots", {"sandbox_id": sid}).json()] == [
        snap.id
    ]
    assert [s["id"] for s in api.get(f"/v1/sandboxes/{sid}/snapshots").json()] == [snap.id]
    assert api.get("/v1/snapshots", {"metadata": json.dumps({"team": "other"})}).json() == []
    assert SnapshotInfo(**api.get(f"/v1/snapshots/{snap.id}").json()).id == snap.id
    run(api, sid, "echo changed > data.txt")
    restored = post(
        api,
        "/v1/sandboxes",
        {
            "snapshot_id": snap.id,
            "timeout_ms": 60_000,
            "metadata": {},
            "network": None,
            "volumes": None,
            "auto_resume": False,
        },
    )
    assert restored.status_code == 201
    assert run(api, restored.json()["id"], "cat data.txt").json()["stdout"] == "original\n"
    # The source is gone: resuming its snapshot makes a new sandbox from the archive.
    api.delete(f"/v1/sandboxes/{sid}")
    again = post(api, f"/v1/sandboxes/{snap.id}/resume").json()
    assert again["id"] not in (sid, child) and again["status"] == "running"
    assert api.delete(f"/v1/snapshots/{snap.id}").status_code == 204
    assert api.get(f"/v1/snapshots/{snap.id}").json()["code"] == "snapshot_not_found"


def test_timeout_metrics_and_kill(made, api, settings):
    sid = made()["id"]
    before = api.get(f"/v1/sandboxes/{sid}").json()["timeout_at"]
    answer = post(
        api,
        f"/v1/sandboxes/{sid}/timeout",
        {"timeout_ms": 3_600_000, "timeout_action": "hibernate"},
    ).json()
    assert answer["timeout_ms"] == 3_600_000 and answer["remaining_ms"] > 3_500_000
    info = api.get(f"/v1/sandboxes/{sid}").json()
    assert info["timeout_at"] > before and info["timeout_action"] == "hibernate"
    settings.MAX_SANDBOX_TIMEOUT_MS = 60_000
    assert (
        post(api, f"/v1/sandboxes/{sid}/timeout", {"timeout_ms": 120_000}).json()["code"]
        == "invalid_request"
    )
    metrics = api.get(f"/v1/sandboxes/{sid}/metrics").json()
    assert len(metrics) == 1
    sample = SandboxMetrics(**metrics[0])
    assert sample.cpu_count >= 1 and sample.mem_total_bytes > 0
    killed = api.delete(f"/v1/sandboxes/{sid}")
    assert killed.json() == {"id": sid, "status": "destroyed"}
    assert api.delete(f"/v1/sandboxes/{sid}").json()["status"] == "destroyed"
    assert not get_driver().exists(sid)
    assert run(api, sid, "true").json()["code"] == "sandbox_not_found"
    assert api.get("/v1/sandboxes").json()["items"] == []
    assert [s["id"] for s in api.get("/v1/sandboxes", {"state": "destroyed"}).json()["items"]] == [
        sid
    ]


def test_lifecycle_events_record_every_change(made, api):
    sid = made(timeout_ms=45_000)["id"]
    snap = post(api, f"/v1/sandboxes/{sid}/hibernate").json()["id"]
    new_id = post(api, f"/v1/sandboxes/{sid}/resume").json()["id"]
    post(api, f"/v1/sandboxes/{new_id}/timeout", {"timeout_ms": 60_000})
    api.delete(f"/v1/sandboxes/{new_id}")

    def events(sandbox_id: str):
        return LifecycleEventListResponse._from_api(
            api.get(f"/v1/sandboxes/{sandbox_id}/lifecycle", {"order": "asc"}).json()
        ).events

    # Each operation is `requested`, then `succeeded`, with the client's reasons.
    old = [(e.operation.value, e.status.value) for e in events(sid)]
    assert old == [
        ("create", "requested"),
        ("create", "succeeded"),
        ("hibernate", "requested"),
        ("hibernate", "succeeded"),
        ("snapshot_created", "succeeded"),
        ("resume_from_snapshot", "requested"),
        ("resume_from_snapshot", "succeeded"),
    ]
    create = events(sid)[1]
    assert create.reason == "api" and create.metadata["timeout_action"] == "destroy"
    resumed = events(sid)[-1]
    assert (resumed.sandbox_id, resumed.source_sandbox_id, resumed.target_sandbox_id) == (
        new_id,
        sid,
        new_id,
    )
    assert resumed.snapshot_id == snap
    new = [(e.operation.value, e.status.value) for e in events(new_id)]
    assert new == [
        ("resume_from_snapshot", "succeeded"),
        ("timeout_updated", "requested"),
        ("timeout_updated", "succeeded"),
        ("destroy", "requested"),
        ("destroy", "succeeded"),
    ]
    assert events(new_id)[0].id == resumed.id  # the same event on both sandboxes' routes
    assert events(new_id)[-1].reason == "manual"
    assert all(e.actor_kind.value == "user" for e in events(sid) + events(new_id))
    newest = api.get("/v1/lifecycle/events", {"limit": 1}).json()
    assert newest["has_more"] and newest["events"][0]["operation"] == "destroy"
    only = api.get("/v1/lifecycle/events", {"operation": "hibernate"}).json()["events"]
    assert [(e["status"], e["snapshot_id"]) for e in only] == [
        ("succeeded", snap),
        ("requested", None),
    ]
    by_snapshot = api.get(f"/v1/snapshots/{snap}/lifecycle").json()["events"]
    assert {e["operation"] for e in by_snapshot} == {
        "hibernate",
        "snapshot_created",
        "resume_from_snapshot",
    }
    assert api.get("/v1/lifecycle/events", {"from": "2999-01-01T00:00:00Z"}).json()["events"] == []
    assert (
        api.get("/v1/lifecycle/events", {"audience": "internal"}).json()["code"]
        == "invalid_request"
    )


ROUTES = [
    ("get", "/v1/sandboxes/{sb}"),
    ("delete", "/v1/sandboxes/{sb}"),
    ("post", "/v1/sandboxes/{sb}/hibernate"),
    ("post", "/v1/sandboxes/{sb}/resume"),
    ("post", "/v1/sandboxes/{sb}/fork"),
    ("post", "/v1/sandboxes/{sb}/timeout"),
    ("get", "/v1/sandboxes/{sb}/metrics"),
    ("post", "/v1/sandboxes/{sb}/exec"),
    ("get", "/v1/sandboxes/{sb}/processes"),
    ("get", "/v1/sandboxes/{sb}/processes/1/logs"),
    ("post", "/v1/sandboxes/{sb}/processes/1/kill"),
    ("post", "/v1/sandboxes/{sb}/processes/1/stdin"),
    ("post", "/v1/sandboxes/{sb}/snapshots"),
    ("get", "/v1/sandboxes/{sb}/snapshots"),
    ("get", "/v1/sandboxes/{sb}/lifecycle"),
    ("get", "/v1/snapshots/{snap}"),
    ("delete", "/v1/snapshots/{snap}"),
    ("get", "/v1/snapshots/{snap}/lifecycle"),
    ("post", "/v1/sandboxes/{snap}/resume"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_other_projects_sandbox_is_not_found(
    runtime, client, other_project, api_key, method, route
):
    from console.sandboxes.service import create_sandbox, destroy_sandbox, snapshot_sandbox

    theirs, _ = create_sandbox(other_project, actor=Actor())
    snapshot = snapshot_sandbox(theirs, actor=Actor())
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_key[0]}"
    url = route.format(sb=theirs.public_id, snap=snapshot.public_id)
    body = {"command": "true", "timeout_ms": 60_000, "data": "x"}
    if method == "post":
        response = post(client, url, body)
    else:
        response = getattr(client, method)(url)
    assert response.status_code == 404, response.content
    assert response.json()["code"] in ("sandbox_not_found", "snapshot_not_found")
    theirs.refresh_from_db()
    assert theirs.status == "running"
    assert Sandbox.objects.count() == 1
    destroy_sandbox(theirs, actor=Actor())


@pytest.mark.parametrize(
    "url, query, message",
    [
        ("/v1/sandboxes", {"limit": "ten"}, "limit must be an integer"),
        ("/v1/sandboxes", {"limit": "0"}, "limit must be from 1 to"),
        ("/v1/lifecycle/events", {"offset": "-1"}, "offset must be from 0 to"),
        ("/v1/lifecycle/events", {"limit": "1.5"}, "limit must be an integer"),
    ],
)
def test_bad_integer_query_parameters_are_refused(api, url, query, message):
    response = api.get(url, query)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request" and message in response.json()["error"]


def test_get_shows_the_network_policy(runtime, api):
    body = {
        "template": "base",
        "internet_access": False,
        "network": {"allow_out": ["192.0.2.0/24"]},
    }
    created = post(api, "/v1/sandboxes", body)
    assert created.status_code == 201, created.content
    got = api.get(f"/v1/sandboxes/{created.json()['id']}", {"fields": "id,network,internet_access"})
    assert got.json()["internet_access"] is False
    assert got.json()["network"]["egress_policy"] == {
        "internet_access": False,
        "allow_out": ["192.0.2.0/24"],
        "deny_out": [],
    }


def test_create_makes_its_cwd(made, api):
    """The client resolves relative paths against the sandbox's cwd from the start."""
    sid = made(cwd="/srv/app/sub")["id"]
    assert run(api, sid, "pwd").json()["stdout"] == "/srv/app/sub\n"
    written = post(api, f"/v1/sandboxes/{sid}/files/write", {"path": "rel.txt", "content": "x"})
    assert written.status_code == 200, written.content
    assert run(api, sid, "cat /srv/app/sub/rel.txt").json()["stdout"] == "x"
