"""The real `nullspace template ...` (0.1.9) against a live server: every template line of
the CLI reference (warm pools aside: tests/console/test_cli_warm_pools.py's), each
checked by its effect: a package in a sandbox of the template, a tag resolving to its
build, an alias answering after a rename, a second identical build served from the
cache, a cancel that kills the running step, a secret that appears nowhere."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.live import remove_tree, start_live_server

pytestmark = pytest.mark.cli

BUILD_TIMEOUT = 900


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("live-templates"))
    yield server
    server.stop()
    remove_tree(server.data_dir)


def ok(live, *args: str, timeout: float = 120) -> str:
    return live.cli(*args, check=True, timeout=timeout).stdout


def as_json(live, *args: str, timeout: float = 120):
    return json.loads(ok(live, *args, timeout=timeout))


def last_json(text: str):
    """The JSON document a command printed after its log lines."""
    start = text.rfind("\n{")
    return json.loads(text[start + 1 :] if start >= 0 else text)


def run_in(live, sandbox_id: str, command: str) -> subprocess.CompletedProcess:
    return live.cli("sandbox", "exec", sandbox_id, "--", "bash", "-c", command)


@pytest.fixture(scope="module")
def demo(live):
    """The issue's `done when`: a build with apt_install cowsay and a run step, streamed."""
    nonce = uuid.uuid4().hex[:10]
    result = live.cli(
        "template",
        "build",
        "--from-debian-image",
        "bookworm",
        "--apt-install",
        "cowsay",
        "--run-cmd",
        f"echo built-{nonce} > /etc/demo-stamp",
        "--set-runtime-env",
        "GREETING=moo",
        "--name",
        "demo",
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    # Text logs go to stderr, the result to stdout.
    return {"nonce": nonce, "log": result.stderr, "build": json.loads(result.stdout)}


def test_build_streams_steps_and_a_sandbox_of_the_template_has_cowsay(live, demo):
    out = demo["log"]
    assert "apt_install" in out and "cowsay" in out  # the step's log lines were printed
    assert "cache miss" in out or "cache hit" in out
    build = demo["build"]
    assert build["status"] == "ready" and build["name"] == "demo"
    created = as_json(live, "sandbox", "create", "--template", "demo")
    sandbox_id = created["id"]
    try:
        moo = run_in(
            live, sandbox_id, "/usr/games/cowsay moo && cat /etc/demo-stamp && echo $GREETING"
        )
        assert moo.returncode == 0, moo.stderr
        assert "< moo >" in moo.stdout
        assert f"built-{demo['nonce']}" in moo.stdout
        assert moo.stdout.strip().endswith("moo")
    finally:
        live.cli("sandbox", "kill", sandbox_id)
    # The builtin template does not have it.
    plain = as_json(live, "sandbox", "create", "--template", "base")
    try:
        assert run_in(live, plain["id"], "test -e /usr/games/cowsay").returncode != 0
    finally:
        live.cli("sandbox", "kill", plain["id"])


def test_second_identical_build_is_served_from_the_cache(live, demo):
    again = live.cli(
        "template",
        "build",
        "--from-debian-image",
        "bookworm",
        "--apt-install",
        "cowsay",
        "--run-cmd",
        f"echo built-{demo['nonce']} > /etc/demo-stamp",
        "--set-runtime-env",
        "GREETING=moo",
        "--name",
        "demo",
        "--log-format",
        "jsonl",
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    entries = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    cache = [e for e in entries if e.get("kind") == "cache"]
    assert cache and all(e["cache_status"] == "hit" for e in cache), cache
    status = as_json(live, "template", "build-status", json.loads(again.stdout)["build_id"])
    summary = status["build"]["cache_summary"]
    assert summary["layer_hits"] == 2 and summary["layer_misses"] == 0
