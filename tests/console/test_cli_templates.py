"""The real `nullspace template ...` (0.1.9) against a live server: every template line of
the CLI reference (warm pools aside: tests/console/test_cli_warm_pools.py's), each
checked by its effect: a package in a sandbox of the template, a tag resolving to its
build, an alias answering after a rename, a second identical build served from the
cache, a cancel that kills the running step, a secret that appears nowhere."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.live import VENV_BIN, remove_tree, start_live_server

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


def build(live, *args: str, check: bool = True, env: dict[str, str] | None = None):
    """`nullspace template build ARGS` (env: more variables for --build-secret-env)."""
    result = subprocess.run(
        [str(VENV_BIN / "nullspace"), "template", "build", *args],
        cwd=live.data_dir,
        env=live.cli_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"build failed:\n{result.stdout}\n{result.stderr}")
    return result


def quick(live, name: str, *steps: str, extra: tuple[str, ...] = ()) -> dict:
    """A small build (run steps only: no download) whose result is returned."""
    args = ["--from-debian-image", "bookworm"]
    for command in steps:
        args += ["--run-cmd", command]
    return json.loads(build(live, *args, *extra, "--name", name).stdout)


def new_sandbox(live, template: str) -> str:
    return as_json(live, "sandbox", "create", "--template", template)["id"]


def test_init_render_json_and_dockerfile_are_local(live, tmp_path):
    project = tmp_path / "tpl"
    project.mkdir()
    from tests.live import VENV_BIN as _bin

    made = subprocess.run(
        [str(_bin / "nullspace"), "template", "init"],
        cwd=project,
        env=live.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0 and (project / "template.py").is_file()
    # The reference's line as written: the 0.1.9 client itself asks for --name first.
    bare = live.cli(
        "template", "render", "json", "--from-ubuntu-image", "22.04", "--apt-install", "git"
    )
    assert bare.returncode == 2 and "--name" in bare.stderr
    rendered = as_json(
        live,
        "template",
        "render",
        "json",
        "--from-ubuntu-image",
        "22.04",
        "--apt-install",
        "git",
        "--name",
        "demo-template",
    )
    assert rendered["base_image"] == "ubuntu:22.04"
    assert rendered["steps"] == [{"action": "apt_install", "packages": ["git"]}]
    dockerfile = ok(
        live,
        "template",
        "render",
        "dockerfile",
        "--from-ubuntu-image",
        "22.04",
        "--apt-install",
        "git",
        "--name",
        "demo-template",
    )
    assert dockerfile.startswith("FROM ubuntu:22.04") and "git" in dockerfile


def test_list_get_exists_and_fields(live, demo):
    listed = as_json(live, "template", "list", "--json")
    refs = {t["canonical_ref"]: t for t in listed}
    assert "nullspace/base:default" in refs and "live/demo:default" in refs
    assert refs["live/demo:default"]["visibility"] == "private"
    fields = as_json(live, "template", "list", "--fields", "id,canonical_ref,visibility", "--json")
    assert all(set(row) == {"id", "canonical_ref", "visibility"} for row in fields)
    got = as_json(live, "template", "get", "demo")
    assert got["id"] == demo["build"]["template_id"] and got["default_tag"] == "default"
    assert got["runtime_defaults"]["default_env_keys"] == ["GREETING"]
    assert as_json(live, "template", "get", "demo", "--fields", "id,canonical_ref") == {
        "id": got["id"],
        "canonical_ref": "live/demo:default",
    }
    for ref in ("demo", "live/demo", "live/demo:default", got["id"], "nullspace/base:default"):
        assert as_json(live, "template", "exists", ref)["exists"] is True, ref
    assert as_json(live, "template", "exists", "no-such-template")["exists"] is False
    missing = live.cli("template", "get", "no-such-template")
    assert missing.returncode != 0 and "not found" in (missing.stderr + missing.stdout).lower()


def test_bases_no_suite_ships_are_refused_with_the_ones_that_exist(live):
    ubuntu = build(
        live,
        "--from-ubuntu-image",
        "22.04",
        "--name",
        "demo-template",
        "--cpu-count",
        "4",
        "--memory-mb",
        "2048",
        "--skip-cache",
        check=False,
    )
    text = ubuntu.stdout + ubuntu.stderr
    assert ubuntu.returncode != 0 and "RUNTIME_UBUNTU_MIRROR" in text
    python = build(
        live,
        "--from-python-image",
        "3.12",
        "--name",
        "offline-template",
        "--no-internet-access",
        check=False,
    )
    text = python.stdout + python.stderr
    assert python.returncode != 0 and "3.11" in text and "3.13" in text
    background = build(
        live,
        "--from-python-image",
        "3.12",
        "--name",
        "demo-template",
        "--background",
        check=False,
    )
    assert background.returncode != 0 and "3.12" in background.stdout + background.stderr
    assert as_json(live, "template", "exists", "demo-template")["exists"] is False


def test_python_image_maps_to_its_suite_offline(live):
    result = build(
        live,
        "--from-python-image",
        "3.11",
        "--run-cmd",
        "python3 -c 'import sys; assert sys.version_info[:2] == (3, 11)'",
        "--run-cmd",
        "! curl -sS --max-time 5 -o /dev/null http://deb.debian.org/",
        "--name",
        "offline-template",
        "--no-internet-access",
    )
    assert "Debian bookworm" in result.stderr  # the warning says what it is built on
    built = json.loads(result.stdout)
    status = as_json(live, "template", "build-status", built["build_id"])
    assert status["build"]["build_config"]["internet_access"] is False


def test_background_build_wait_status_and_logs(live):
    nonce = uuid.uuid4().hex[:8]
    started = json.loads(
        build(
            live,
            "--from-python-image",
            "3.11",
            "--run-cmd",
            f"for i in 1 2 3; do echo line-$i-{nonce}; sleep 1; done",
            "--name",
            "demo-background",
            "--background",
        ).stdout
    )
    build_id = started["build_id"]
    assert started["status"] in ("waiting", "building")
    waited = live.cli(
        "template",
        "wait",
        build_id,
        "--poll-interval-ms",
        "500",
        "--log-format",
        "jsonl",
        timeout=BUILD_TIMEOUT,
    )
    assert waited.returncode == 0, waited.stderr
    lines = [json.loads(x) for x in waited.stderr.splitlines() if x.startswith("{")]
    assert [e["message"] for e in lines if e["message"].startswith("line-")] == [
        f"line-{i}-{nonce}" for i in (1, 2, 3)
    ]
    assert json.loads(waited.stdout)["build"]["status"] == "ready"
    status = as_json(live, "template", "build-status", build_id, "--offset", "2")
    assert status["entries"][0]["offset"] == 2 and status["next_offset"] > 2
    logs = ok(live, "template", "logs", build_id)
    assert f"line-3-{nonce}" in logs
    followed = as_json(live, "template", "logs", build_id, "--follow", "--json")
    assert followed[-1]["kind"] == "end"


def test_logs_follow_streams_lines_as_they_happen(live):
    started = json.loads(
        build(
            live,
            "--from-debian-image",
            "bookworm",
            "--run-cmd",
            f"echo first-{uuid.uuid4().hex[:6]}; sleep 4; echo second",
            "--name",
            "demo-follow",
            "--background",
        ).stdout
    )
    process = subprocess.Popen(
        [
            str(VENV_BIN / "nullspace"),
            "template",
            "logs",
            started["build_id"],
            "--follow",
            "--json",
        ],
        cwd=live.data_dir,
        env=live.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=BUILD_TIMEOUT)
    assert process.returncode == 0, err
    entries = json.loads(out)
    messages = [e["message"] for e in entries]
    assert "second" in messages and entries[-1]["kind"] == "end"
    first = next(e for e in entries if e["message"].startswith("first-"))
    second = next(e for e in entries if e["message"] == "second")
    assert first["offset"] < second["offset"]


def test_a_tag_resolves_to_its_build_and_promote_moves_it(live):
    one = quick(live, "demo-tags", "echo one > /etc/which")
    two = json.loads(
        build(
            live,
            "--from-debian-image",
            "bookworm",
            "--run-cmd",
            "echo two > /etc/which",
            "--name",
            "demo-tags",
            "--tag",
            "v2",
        ).stdout
    )
    tags = {t["tag"]: t["build_id"] for t in as_json(live, "template", "tag", "list", "demo-tags")}
    assert tags == {"default": one["build_id"], "v2": two["build_id"]}
    info = as_json(live, "template", "tag", "assign", "demo-tags:v2", "stable", "prod")
    assert set(info["tags"]) == {"default", "v2", "stable", "prod"}
    for ref, expected in (
        ("demo-tags", "one"),
        ("demo-tags:stable", "two"),
        ("demo-tags:prod", "two"),
    ):
        sandbox_id = new_sandbox(live, ref)
        try:
            assert run_in(live, sandbox_id, "cat /etc/which").stdout.strip() == expected, ref
        finally:
            live.cli("sandbox", "kill", sandbox_id)
    pinned = new_sandbox(live, f"demo-tags:{one['build_id']}")
    try:
        assert run_in(live, pinned, "cat /etc/which").stdout.strip() == "one"
    finally:
        live.cli("sandbox", "kill", pinned)
    promoted = as_json(live, "template", "promote", one["build_id"], "--tag", "stable")
    assert "stable" in promoted["tags"]
    tags = {t["tag"]: t["build_id"] for t in as_json(live, "template", "tag", "list", "demo-tags")}
    assert tags["stable"] == one["build_id"] and tags["prod"] == two["build_id"]
    ok(live, "template", "tag", "remove", "demo-tags", "prod")
    tags = {t["tag"] for t in as_json(live, "template", "tag", "list", "demo-tags")}
    assert "prod" not in tags
    assert as_json(live, "template", "exists", "demo-tags:prod")["exists"] is True  # the template
    gone = live.cli("sandbox", "create", "--template", "demo-tags:prod")
    assert gone.returncode != 0 and "no ready build tagged 'prod'" in gone.stdout + gone.stderr


def test_rename_keeps_the_old_name_as_an_alias(live):
    quick(live, "demo-old", "echo renamed > /etc/which")
    renamed = as_json(live, "template", "rename", "demo-old", "demo-new")
    assert renamed["name"] == "demo-new" and renamed["canonical_ref"] == "live/demo-new:default"
    assert as_json(live, "template", "get", "demo-old")["name"] == "demo-new"
    aliases = as_json(live, "template", "alias", "list", "demo-new")
    assert [a["alias_ref"] for a in aliases] == ["live/demo-old"]
    sandbox_id = new_sandbox(live, "demo-old")
    try:
        assert run_in(live, sandbox_id, "cat /etc/which").stdout.strip() == "renamed"
    finally:
        live.cli("sandbox", "kill", sandbox_id)
    ok(live, "template", "alias", "remove", "demo-new", "demo-old")
    assert as_json(live, "template", "exists", "demo-old")["exists"] is False
    assert as_json(live, "template", "exists", "demo-new")["exists"] is True


def test_visibility_namespace_reserve_and_claim_release(live):
    quick(live, "demo-shared", "true")
    assert (
        as_json(live, "template", "visibility", "set", "demo-shared", "public")["visibility"]
        == "public"
    )
    other_key = live.manage(
        "bootstrap", "--email", "other@example.com", "--team", "other", "--project", "main"
    )
    as_other = subprocess.run(
        [str(VENV_BIN / "nullspace"), "template", "exists", "live/demo-shared"],
        cwd=live.data_dir,
        env=live.cli_env(NULLSPACE_API_KEY=other_key),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(as_other.stdout)["exists"] is True
    assert (
        as_json(live, "template", "visibility", "set", "demo-shared", "private")["visibility"]
        == "private"
    )
    hidden = subprocess.run(
        [str(VENV_BIN / "nullspace"), "template", "exists", "live/demo-shared"],
        cwd=live.data_dir,
        env=live.cli_env(NULLSPACE_API_KEY=other_key),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(hidden.stdout)["exists"] is False
    assert as_json(live, "template", "namespace", "get", "live") == {
        "slug": "live",
        "kind": "user",
        "is_default": True,
    }
    assert live.cli("template", "namespace", "get", "other").returncode != 0
    claim = as_json(live, "template", "reserve", "live/reserved-name")
    assert claim["canonical_ref"] == "live/reserved-name:default"
    assert claim["claim_token"].startswith("tclm_")
    again = live.cli("template", "reserve", "live/reserved-name")
    assert again.returncode != 0 and "reserved" in again.stdout + again.stderr
    assert "Released" in ok(live, "template", "claim", "release", claim["claim_token"])
    assert (
        as_json(live, "template", "reserve", "live/reserved-name")["claim_token"]
        != claim["claim_token"]
    )
    refused = live.cli("template", "reserve", "other/some-name")
    assert refused.returncode != 0


def test_delete_is_refused_while_a_sandbox_uses_it(live):
    quick(live, "demo-delete", "true")
    sandbox_id = new_sandbox(live, "demo-delete")
    refused = live.cli("template", "delete", "demo-delete")
    assert refused.returncode != 0 and sandbox_id in refused.stdout + refused.stderr
    live.cli("sandbox", "kill", sandbox_id, check=True)
    assert "Deleted" in ok(live, "template", "delete", "demo-delete")
    assert as_json(live, "template", "exists", "demo-delete")["exists"] is False


def test_cancel_kills_the_running_step(live):
    started = json.loads(
        build(
            live,
            "--from-debian-image",
            "bookworm",
            "--run-cmd",
            f"echo started-{uuid.uuid4().hex[:6]}; sleep 600",
            "--name",
            "demo-cancel",
            "--background",
        ).stdout
    )
    build_id = started["build_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = as_json(live, "template", "build-status", build_id)
        if any(e["message"].startswith("started-") for e in status["entries"]):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the step never started")
    step_sandbox = f"tbs_{build_id[3:]}_0"
    assert live.driver().exists(step_sandbox)
    cancelled = as_json(live, "template", "cancel", build_id, "--reason", "too slow")
    assert cancelled["build"]["status"] == "cancelled"
    assert cancelled["build"]["cancellation_reason"] == "too slow"
    assert cancelled["entries"][-1]["kind"] == "cancelled"
    assert not live.driver().exists(step_sandbox)  # its step was killed, its sandbox removed
    assert as_json(live, "template", "exists", "demo-cancel")["exists"] is True
    no_build = live.cli("sandbox", "create", "--template", "demo-cancel")
    assert no_build.returncode != 0


def test_a_failure_names_the_step_its_exit_code_and_output_and_retry_reruns_it(live):
    failed = build(
        live,
        "--from-debian-image",
        "bookworm",
        "--run-cmd",
        "true",
        "--run-cmd",
        "echo about-to-fail; exit 3",
        "--name",
        "demo-fail",
        check=False,
    )
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "step 2" in text and "exited with code 3" in text and "about-to-fail" in text
    builds = live.cli("template", "builds", "demo-fail", check=True)
    build_id = json.loads(builds.stdout)["builds"][0]["build_id"]
    status = as_json(live, "template", "build-status", build_id)
    assert status["build"]["status"] == "error"
    assert status["build"]["error_detail"]["step_index"] == 1
    assert status["build"]["failure_phase"] == "build_step"
    retried = as_json(live, "template", "retry", build_id, "--tag", "again")
    assert retried["retry_of_build_id"] == build_id and retried["tags"] == ["again"]
    waited = live.cli("template", "wait", retried["build_id"], timeout=BUILD_TIMEOUT)
    assert waited.returncode != 0 and "exited with code 3" in waited.stdout + waited.stderr


def test_dockerfile_with_context_copy_and_a_secret_that_appears_nowhere(live, tmp_path):
    secret = "npm-" + uuid.uuid4().hex
    context = tmp_path / "app"
    (context / "conf").mkdir(parents=True)
    (context / "app.txt").write_text("hello from the context\n")
    (context / "conf" / "app.conf").write_text("mode=test\n")
    (context / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        "ARG GREETING=hello\n"
        "ENV APP_HOME=/srv/app\n"
        "WORKDIR /srv/app\n"
        # Secrets never enter cache keys: a fresh step first, so this run's secret is used.
        f"RUN echo run-{uuid.uuid4().hex[:8]}\n"
        "COPY app.txt ./app.txt\n"
        "COPY conf/ /etc/myapp/\n"
        "RUN --mount=type=secret,id=npm_token sha256sum < /run/secrets/npm_token > token.sha"
        " && cat /run/secrets/npm_token && echo\n"
        "RUN <<EOF\n"
        "echo heredoc-$GREETING > /srv/app/heredoc.txt\n"
        "chown -R user:user /srv/app\n"
        "EOF\n"
        "USER user\n"
        "EXPOSE 8080\n"
        "LABEL org.example.team=eval\n"
        'CMD ["python3", "-m", "http.server", "8080"]\n'
    )
    result = build(
        live,
        "--from-dockerfile",
        str(context / "Dockerfile"),
        "--name",
        "docker-template",
        "--build-secret-env",
        "npm_token=NPM_TOKEN",
        "--log-format",
        "jsonl",
        env={"NPM_TOKEN": secret},
    )
    built = json.loads(result.stdout)
    assert secret not in result.stdout + result.stderr
    assert "[redacted]" in result.stderr  # the step printed it; the log masked it
    status = live.cli("template", "build-status", built["build_id"], check=True).stdout
    logs = live.cli("template", "logs", built["build_id"], "--json", check=True).stdout
    builds = live.cli("template", "builds", "docker-template", check=True).stdout
    assert secret not in status + logs + builds
    assert json.loads(status)["build"]["oci_metadata"]["labels"] == {"org.example.team": "eval"}
    sandbox_id = new_sandbox(live, "docker-template")
    try:
        check = run_in(
            live,
            sandbox_id,
            "whoami; pwd; cat app.txt /etc/myapp/app.conf heredoc.txt; echo $APP_HOME; "
            "cat token.sha; test ! -e /run/secrets",
        )
        assert check.returncode == 0, check.stderr
        lines = check.stdout.splitlines()
        import hashlib

        assert lines[:7] == [
            "user",
            "/srv/app",
            "hello from the context",
            "mode=test",
            "heredoc-hello",
            "/srv/app",
            hashlib.sha256(secret.encode()).hexdigest() + "  -",
        ]
        nowhere = run_in(
            live, sandbox_id, f"grep -rIl --exclude-dir=proc --exclude-dir=sys {secret} / || true"
        )
        assert nowhere.stdout.strip() == ""
        served = run_in(
            live,
            sandbox_id,
            "for i in $(seq 50); do curl -fsS -o /dev/null localhost:8080/app.txt && exit 0; "
            "sleep 0.2; done; exit 1",
        )
        assert served.returncode == 0  # CMD is the start command, started in the background
    finally:
        live.cli("sandbox", "kill", sandbox_id)
    from pathlib import Path

    layers = Path("/var/cache/nullspace/layers")
    for layer_id in json.loads(status)["build"]["artifact_ids"]:
        found = subprocess.run(
            ["grep", "-rIl", secret, str(layers / layer_id)], capture_output=True, text=True
        )
        assert found.stdout == "", layer_id
    for database in live.data_dir.glob("console.sqlite3*"):  # the database and its WAL
        assert secret.encode() not in database.read_bytes()


def test_from_template_builds_on_another_templates_layers(live, demo):
    result = build(
        live,
        "--from-template",
        "demo",
        "--run-cmd",
        "/usr/games/cowsay layered > /etc/layered",
        "--name",
        "demo-child",
    )
    child = json.loads(result.stdout)
    status = as_json(live, "template", "build-status", child["build_id"])
    assert status["build"]["source_type"] == "template_base"
    parent = as_json(live, "template", "build-status", demo["build"]["build_id"])
    parent_layers = parent["build"]["artifact_ids"]
    assert status["build"]["artifact_ids"][: len(parent_layers)] == parent_layers
    sandbox_id = new_sandbox(live, "demo-child")
    try:
        out = run_in(live, sandbox_id, "cat /etc/layered /etc/demo-stamp; echo $GREETING")
        assert "layered" in out.stdout and f"built-{demo['nonce']}" in out.stdout
        assert out.stdout.strip().endswith("moo")  # the parent's defaults carry over
    finally:
        live.cli("sandbox", "kill", sandbox_id)


def test_start_command_and_readiness_apply_at_create(live):
    build(
        live,
        "--from-debian-image",
        "bookworm",
        "--run-cmd",
        "mkdir -p /srv/site && echo ready-page > /srv/site/index.html",
        "--set-workdir",
        "/srv/site",
        "--start-cmd",
        "sleep 1; python3 -m http.server 8000",
        "--ready-port",
        "8000",
        "--name",
        "demo-ready",
    )
    info = as_json(live, "template", "get", "demo-ready")
    assert info["runtime_defaults"]["readiness"]["kind"] == "tcp"
    sandbox_id = new_sandbox(live, "demo-ready")
    try:
        # Create answered once the port was open: the server is up at once, in the workdir.
        served = run_in(live, sandbox_id, "curl -fsS localhost:8000/index.html; pwd")
        assert served.returncode == 0 and served.stdout.split() == ["ready-page", "/srv/site"]
    finally:
        live.cli("sandbox", "kill", sandbox_id)
    build(
        live,
        "--from-debian-image",
        "bookworm",
        "--start-cmd",
        "echo giving-up; exit 4",
        "--ready-port",
        "8000",
        "--name",
        "demo-never-ready",
    )
    failed = live.cli("sandbox", "create", "--template", "demo-never-ready", timeout=180)
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "exited with code 4" in text and "giving-up" in text


def test_python_313_is_debian_trixie_with_its_own_image(live):
    result = build(
        live,
        "--from-python-image",
        "3.13",
        "--run-cmd",
        "python3 --version > /etc/pyver",
        "--name",
        "demo-trixie",
    )
    assert "Debian trixie" in result.stderr
    sandbox_id = new_sandbox(live, "demo-trixie")
    try:
        out = run_in(live, sandbox_id, "cat /etc/pyver; . /etc/os-release; echo $VERSION_CODENAME")
        version, codename = out.stdout.split()[1:3]
        assert version.startswith("3.13.") and codename == "trixie"
    finally:
        live.cli("sandbox", "kill", sandbox_id)


def test_pause_and_resume_keep_the_templates_layers(live, demo):
    sandbox_id = new_sandbox(live, "demo")
    run_in(live, sandbox_id, "echo mine > /workspace/note.txt")
    snapshot = as_json(live, "sandbox", "pause", sandbox_id)
    resumed = as_json(live, "sandbox", "resume", snapshot["id"])
    try:
        out = run_in(live, resumed["id"], "/usr/games/cowsay again; cat /workspace/note.txt")
        assert out.returncode == 0 and "< again >" in out.stdout and "mine" in out.stdout
        assert as_json(live, "sandbox", "get", resumed["id"])["template"] == "demo"
    finally:
        live.cli("sandbox", "kill", resumed["id"])
