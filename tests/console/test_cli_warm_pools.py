"""The real `nullspace template warm-pool ...` and `sandbox create --warm-pool` (0.1.9)
against a live server whose worker fills the pools: every warm-pool line of the CLI
reference, each checked by its effect. Nothing waits a fixed time: each step polls for
the condition it needs."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.live import VENV_BIN, remove_tree, start_live_server

pytestmark = pytest.mark.cli

WAIT = 180.0  # seconds: a pool fills one sandbox at a time, on a loaded machine


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("live-pools"))
    yield server
    server.stop()
    remove_tree(server.data_dir)


def cli_json(live, *args: str, **kwargs):
    return json.loads(live.cli(*args, check=True, **kwargs).stdout)


def api(live, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or live.api_key}"}
    return httpx.request(method, live.url + path, headers=headers, timeout=60, **kwargs)


def until(condition, what: str, timeout: float = WAIT):
    """Poll `condition` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def pool_info(live, pool_id: str) -> dict:
    return cli_json(live, "template", "warm-pool", "get", pool_id, "--json")


def filled_by(live, pool_id: str) -> set[str]:
    """The sandboxes the pool's worker created (their `create` events name the pool)."""
    events = api(live, "GET", "/v1/lifecycle/events", params={"limit": 500}).json()["events"]
    return {
        e["sandbox_id"]
        for e in events
        if e["reason"] == "warm_pool_fill"
        and e["status"] == "succeeded"
        and e["metadata"].get("warm_pool_id") == pool_id
    }


def create_from(live, pool_id: str, mode: str, *more: str):
    return live.cli(
        "sandbox", "create", "--template", "base", "--warm-pool", pool_id,
        "--warm-pool-mode", mode, *more,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pool(live):
    made = cli_json(
        live, "template", "warm-pool", "create", "base", "--name", "review-api-small",
        "--min-ready", "2", "--max-ready", "4", "--label", "team=review", "--json",
    )  # fmt: skip
    assert made["state"] == "enabled" and made["min_ready"] == 2 and made["max_ready"] == 4
    assert made["template_ref"] == "base" and made["id"].startswith("twp_")
    return made["id"]


def test_a_pool_fills_to_min_ready_and_wait_returns(live, pool):
    waited = cli_json(
        live, "template", "warm-pool", "wait", pool, "--min-ready", "2", "--timeout", str(WAIT),
        "--interval", "0.2", "--json",
    )  # fmt: skip
    assert waited["status"]["ready"] >= 2 and waited["status"]["target"] == 2
    got = pool_info(live, pool)
    assert got["status"]["ready"] == 2 and got["status"]["warming"] == 0
    listed = cli_json(
        live, "template", "warm-pool", "list", "--template", "base", "--status", "ready", "--json"
    )
    assert [item["id"] for item in listed["items"]] == [pool]
    labelled = cli_json(live, "template", "warm-pool", "list", "--label", "team=other", "--json")
    assert labelled["items"] == []
    # Hidden: the pool's sandboxes are in no list until checked out.
    listed_sandboxes = cli_json(live, "sandbox", "list", "--json")
    assert not {s["id"] for s in listed_sandboxes} & filled_by(live, pool)


def test_a_warm_create_returns_a_pool_sandbox_and_the_pool_refills(live, pool):
    until(lambda: pool_info(live, pool)["status"]["ready"] >= 2, "a full pool")
    made = cli_json(
        live, "sandbox", "create", "--template", "base", "--warm-pool", pool,
        "--warm-pool-mode", "prefer", "--warm-pool-wait", "1500", "--env", "WHO=pool",
        "--metadata", "ticket=42", "--timeout", "600",
    )  # fmt: skip
    checkout = made["warm_pool_checkout"]
    assert checkout["hit"] is True and checkout["source"] == "ready_instance"
    assert made["id"] in filled_by(live, pool)
    assert made["metadata"]["ticket"] == "42" and made["timeout_ms"] == 600_000
    ran = live.cli("sandbox", "exec", made["id"], "--shell", "echo $WHO", check=True)
    assert ran.stdout.strip() == "pool"
    assert made["id"] in {s["id"] for s in cli_json(live, "sandbox", "list", "--json")}
    refilled = until(
        lambda: (info := pool_info(live, pool))["status"]["ready"] >= 2 and info, "a refill"
    )
    assert refilled["status"]["claimed"] == 1
    assert made["id"] not in filled_by(live, pool) - {made["id"]}
    events = api(live, "GET", f"/v1/sandboxes/{made['id']}/lifecycle").json()["events"]
    assert any(
        e["metadata"].get("warm_pool_checkout") == "ready_instance" and e["status"] == "succeeded"
        for e in events
    )
    live.cli("sandbox", "kill", made["id"], check=True)


def test_bypass_is_always_cold(live, pool):
    made = cli_json(live, "sandbox", "create", "--warm-pool", pool, "--warm-pool-mode", "bypass")
    assert made["warm_pool_checkout"]["source"] == "bypassed"
    assert made["id"] not in filled_by(live, pool)
    live.cli("sandbox", "kill", made["id"], check=True)


def test_what_cannot_apply_to_a_started_sandbox_is_refused(live, pool):
    until(lambda: pool_info(live, pool)["status"]["ready"] >= 1, "a ready sandbox")
    ready = pool_info(live, pool)["status"]["ready"]
    for flags, field in (
        (("--memory", "1024"), "memory_mb"),
        (("--no-internet-access",), "network"),
    ):
        refused = create_from(live, pool, "prefer", *flags)
        assert refused.returncode == 2, refused.stderr
        assert f"{field} cannot apply to a warm pool's sandbox" in refused.stderr
    assert pool_info(live, pool)["status"]["ready"] == ready  # nothing was taken


def test_scale_enable_disable_reconcile(live, pool):
    scaled = cli_json(
        live, "template", "warm-pool", "scale", pool, "--min-ready", "3", "--max-ready", "6",
        "--json",
    )  # fmt: skip
    assert (scaled["min_ready"], scaled["max_ready"]) == (3, 6)
    until(lambda: pool_info(live, pool)["status"]["ready"] >= 3, "the pool scaled up")
    disabled = cli_json(live, "template", "warm-pool", "disable", pool, "--json")
    assert disabled["state"] == "disabled" and disabled["status"]["target"] == 0
    assert disabled["status"]["ready"] == 3  # a disabled pool keeps what is ready
    enabled = cli_json(live, "template", "warm-pool", "enable", pool, "--json")
    assert enabled["state"] == "enabled" and enabled["status"]["target"] == 3
    before = pool_info(live, pool)["last_reconciled_at"]
    reconciled = cli_json(live, "template", "warm-pool", "reconcile", pool, "--json")
    assert reconciled["id"] == pool
    until(lambda: pool_info(live, pool)["last_reconciled_at"] != before, "a reconcile pass")
    cli_json(live, "template", "warm-pool", "scale", pool, "--min-ready", "2", "--json")


def test_two_concurrent_checkouts_never_get_the_same_sandbox(live, pool):
    until(lambda: pool_info(live, pool)["status"]["ready"] >= 2, "a full pool")
    # Disabled: no refill, so exactly the sandboxes ready now can be checked out.
    ready = cli_json(live, "template", "warm-pool", "disable", pool, "--json")["status"]["ready"]
    with ThreadPoolExecutor(max_workers=ready + 2) as threads:
        results = list(threads.map(lambda _: create_from(live, pool, "require"), range(ready + 2)))
    made = [json.loads(r.stdout) for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    ids = [m["id"] for m in made]
    assert len(ids) == len(set(ids)) == ready, ids
    assert all(m["warm_pool_checkout"]["hit"] for m in made)
    assert len(refused) == 2 and all("has no ready sandbox" in r.stderr for r in refused)
    for sandbox_id in ids:
        live.cli("sandbox", "kill", sandbox_id, check=True)
    cli_json(live, "template", "warm-pool", "enable", pool, "--json")


def test_drain_empties_the_pool_and_require_is_then_unavailable(live, pool):
    until(lambda: pool_info(live, pool)["status"]["ready"] >= 1, "a ready sandbox")
    drained = cli_json(live, "template", "warm-pool", "drain", pool, "--json")
    assert drained["state"] == "draining" and drained["degraded_reason"] == "drain_active"
    empty = until(
        lambda: (info := pool_info(live, pool))["state"] == "disabled" and info, "a drained pool"
    )
    assert empty["status"]["ready"] == 0 and empty["status"]["draining"] == 0
    refused = create_from(live, pool, "require")
    assert refused.returncode != 0 and "has no ready sandbox" in refused.stderr
    body = {"template": "base", "warm_pool": {"id": pool, "mode": "require"}}
    answer = api(live, "POST", "/v1/sandboxes", json=body)
    assert (answer.status_code, answer.json()["code"]) == (409, "warm_pool_unavailable")
    fallback = cli_json(
        live, "sandbox", "create", "--warm-pool", pool, "--warm-pool-mode", "prefer"
    )
    assert fallback["warm_pool_checkout"]["source"] == "cold_create"
    live.cli("sandbox", "kill", fallback["id"], check=True)
    # Enabled again, a require that may wait gets the first sandbox the refill makes.
    cli_json(live, "template", "warm-pool", "enable", pool, "--json")
    waited = cli_json(
        live, "sandbox", "create", "--warm-pool", pool, "--warm-pool-mode", "require",
        "--warm-pool-wait", "30000",
    )  # fmt: skip
    assert waited["warm_pool_checkout"]["hit"] is True
    assert waited["id"] in filled_by(live, pool)
    live.cli("sandbox", "kill", waited["id"], check=True)


def test_another_projects_pool_is_not_found(live, pool):
    other = live.manage(
        "bootstrap", "--email", "other@example.com", "--team", "other", "--project", "theirs"
    )

    def as_other(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "nullspace"), *args], cwd=live.data_dir, capture_output=True,
            text=True, timeout=120, env=live.cli_env(NULLSPACE_API_KEY=other),
        )  # fmt: skip

    got = as_other("template", "warm-pool", "get", pool, "--json")
    assert got.returncode == 3
    assert json.loads(got.stdout)["error"]["code"] == "warm_pool_not_found"
    taken = as_other("sandbox", "create", "--warm-pool", pool, "--warm-pool-mode", "prefer")
    assert taken.returncode == 3 and f"Warm pool {pool} not found" in taken.stderr
    assert json.loads(as_other("template", "warm-pool", "list", "--json").stdout)["items"] == []


def test_delete(live, pool):
    deleted = cli_json(live, "template", "warm-pool", "delete", pool, "--json")
    assert deleted == {"id": pool, "warm_pool": {"id": pool}, "deleted": True}
    gone = live.cli("template", "warm-pool", "get", pool, "--json")
    assert gone.returncode == 3
    assert json.loads(gone.stdout)["error"]["code"] == "warm_pool_not_found"
    assert cli_json(live, "template", "warm-pool", "list", "--json")["items"] == []
    # Its sandboxes go too: deleted pools' inventory is destroyed by the worker.
    until(
        lambda: (
            api(live, "GET", "/v1/template-warm-pools", params={"state": "deleted"}).json()[
                "items"
            ][0]["status"]["draining"]
            == 0
        ),
        "the deleted pool's sandboxes destroyed",
    )


def test_a_pool_tracking_a_tag_rolls_over_to_each_new_build(live):
    """docs/warm-pools.md, "Rollout": v1 tagged stable, a pool tracking stable fills with
    it; v2 takes the tag, and the pool replaces its ready sandboxes with v2's, so a
    checkout gets a sandbox with what v2 wrote."""

    def build(stamp: str) -> dict:
        return cli_json(
            live, "template", "build", "--from-debian-image", "bookworm", "--run-cmd",
            f"echo {stamp} > /etc/which", "--name", "rolling", "--tag", "stable", timeout=600,
        )  # fmt: skip

    one = build("one")
    made = cli_json(
        live, "template", "warm-pool", "create", "rolling", "--name", "rolling",
        "--min-ready", "1", "--max-ready", "2", "--version-policy", "track_tag",
        "--track-tag", "stable", "--json",
    )  # fmt: skip
    assert (made["version_policy"], made["track_tag"]) == ("track_tag", "stable")
    assert made["resolved_template_build_id"] == one["build_id"]
    until(lambda: pool_info(live, made["id"])["status"]["ready"] >= 1, "v1 ready")
    first = filled_by(live, made["id"])
    two = build("two")
    rolled = until(
        lambda: (
            (info := pool_info(live, made["id"]))["resolved_template_build_id"] == two["build_id"]
            and info["status"]["ready"] >= 1
            and info["rollout_status"]["old_ready_or_warming"] == 0
            and info
        ),
        "the pool on v2",
    )
    assert rolled["rollout_generation"] == 2
    assert rolled["previous_resolved_template_build_id"] == one["build_id"]
    assert (
        rolled["rollout_status"]["current_identity"]["resolved_template_build_id"]
        == (two["build_id"])
    )
    taken = cli_json(
        live, "sandbox", "create", "--template", "rolling:stable", "--warm-pool", made["id"],
        "--warm-pool-mode", "require",
    )  # fmt: skip
    assert taken["warm_pool_checkout"]["hit"] is True and taken["id"] not in first
    which = live.cli("sandbox", "exec", taken["id"], "--shell", "cat /etc/which", check=True)
    assert which.stdout.strip() == "two"
    live.cli("sandbox", "kill", taken["id"], check=True)
    live.cli("template", "warm-pool", "delete", made["id"], check=True)
