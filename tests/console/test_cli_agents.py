"""The real `nullspace` 0.1.9 CLI against a live server: every `agent` command of the CLI
reference and of the deployment guide's operations table, each checked on its effect
(the examples in examples/agents/ are deployed as they are)."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live import ROOT, LiveServer

pytestmark = pytest.mark.cli

EXAMPLES = ROOT / "examples" / "agents"


def cli_json(live: LiveServer, *args: str, **kwargs):
    return json.loads(live.cli(*args, check=True, **kwargs).stdout)


def gone(live: LiveServer, sandbox_id: str) -> bool:
    """A destroyed sandbox is not found, like one that never existed."""
    result = live.cli("sandbox", "get", sandbox_id)
    return result.returncode != 0 and "not found" in result.stderr


def wait_for(check: Callable[[], object], timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def api(live: LiveServer, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {live.api_key}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{live.url}{path}", headers=headers, timeout=30, **kwargs)


def run_status(live: LiveServer, name: str, run_id: str) -> dict:
    return cli_json(live, "agent", "status", name, "--run", run_id, "--json")


def finished_run(live: LiveServer, name: str, run_id: str, timeout: float = 60) -> dict:
    terminal = {"succeeded", "failed", "cancelled", "timed_out"}
    return wait_for(
        lambda: (s := run_status(live, name, run_id))["target"]["status"] in terminal and s,
        timeout,
        f"run {run_id} to end",
    )


def via_gateway(live: LiveServer, url: str, cookies: dict | None = None) -> httpx.Response:
    parts = urlsplit(url)
    target = f"http://127.0.0.1:{live.port}{parts.path or '/'}" + (
        f"?{parts.query}" if parts.query else ""
    )
    headers = {"Host": parts.netloc}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return httpx.get(target, headers=headers, timeout=15)


def open_service(live: LiveServer, url: str) -> httpx.Response:
    """Open a service URL as a browser does: the signed link answers 303 + cookie, then the page."""
    first = via_gateway(live, url)
    assert first.status_code == 303, first.text
    parts = urlsplit(url)
    return via_gateway(
        live, f"http://{parts.netloc}{first.headers['location']}", dict(first.cookies)
    )


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("agent-projects")
    shutil.copytree(EXAMPLES / "job", root / "job")
    shutil.copytree(EXAMPLES / "service", root / "service")
    return root


@pytest.fixture(scope="module")
def job(live, projects) -> dict:
    return cli_json(live, "agent", "deploy", "--project-dir", str(projects / "job"), "--json")


@pytest.fixture(scope="module")
def service(live, projects) -> dict:
    return cli_json(live, "agent", "deploy", "--project-dir", str(projects / "service"), "--json")


# --- init and deploy ----------------------------------------------------------------------


def test_init_writes_a_config_that_deploys_dry(live, tmp_path):
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "requirements.txt").write_text("")
    result = live.cli("agent", "init", "--project-dir", str(tmp_path), check=True)
    assert "Created" in result.stdout
    config = (tmp_path / "nullspace.agent.toml").read_text()
    assert 'mode = "job"' in config and 'entrypoint = "python main.py"' in config
    assert 'install = "pip install -r requirements.txt"' in config
    plan = cli_json(live, "agent", "deploy", "--project-dir", str(tmp_path), "--dry-run", "--json")
    assert plan["dry_run"] is True
    assert [e["path"] for e in plan["bundle"]["entries"] if e["included"]] == [
        "main.py",
        "nullspace.agent.toml",
        "requirements.txt",
    ]


def test_deploy_creates_then_reuses_the_deployment_by_name(live, projects, job):
    deployment, version = job["deployment"], job["version"]
    assert deployment["name"] == "example-job" and deployment["mode"] == "job"
    assert version["status"] == "ready" and version["version_number"] >= 1
    assert version["bundle_digest"] == job["bundle"]["bundle_digest"]
    assert version["bundle_manifest"]["file_count"] == 2
    assert job["cache"]["status"] == "disabled" and job["cache"]["reason"] == "no_install_command"
    again = cli_json(live, "agent", "deploy", "--project-dir", str(projects / "job"), "--json")
    assert again["deployment"]["id"] == deployment["id"]
    assert again["version"]["version_number"] == version["version_number"] + 1
    got = cli_json(live, "agent", "get", "example-job", "--json")
    assert got["active_version_id"] == again["version"]["id"]
    human = live.cli("agent", "deploy", "--project-dir", str(projects / "job"), check=True).stdout
    assert f"Deployed example-job ({deployment['id']})" in human
    assert "Cache: disabled (auto)" in human


def test_list_and_get(live, job, service):
    listed = cli_json(live, "agent", "list", "--json")
    names = {item["name"]: item for item in listed["items"]}
    assert {"example-job", "example-service"} <= set(names)
    assert names["example-service"]["mode"] == "service"
    table = live.cli("agent", "list", check=True).stdout
    assert table.splitlines()[0] == "ID\tNAME\tMODE\tSTATUS\tACTIVE_VERSION"
    got = cli_json(live, "agent", "get", "example-job", "--json")
    assert got["id"] == job["deployment"]["id"] and got["status"] == "active"
    by_id = live.cli("agent", "get", job["deployment"]["id"], check=True).stdout
    assert by_id.startswith(f"{job['deployment']['id']}\texample-job\tjob\tactive\t")


def test_live_deploy_refuses_reserved_modes(live, tmp_path):
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "nullspace.agent.toml").write_text(
        'name = "reserved"\nmode = "worker"\nentrypoint = "python3 main.py"\n'
    )
    result = live.cli("agent", "deploy", "--project-dir", str(tmp_path))
    assert result.returncode == 2 and "supports mode job or service" in result.stderr
    # The server refuses them too, whoever calls it.
    refused = api(live, "POST", "/v1/agent-deployments", json={"name": "w", "mode": "worker"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_request"
    assert "reserved for future Agent Deployment models" in refused.json()["error"]


# --- jobs ------------------------------------------------------------------------------------


def test_run_with_input_file_logs_and_outputs(live, job, tmp_path):
    (tmp_path / "input.json").write_text(json.dumps({"topic": "three little words"}))
    run = cli_json(
        live, "agent", "run", "example-job", "--input", str(tmp_path / "input.json"), "--json"
    )
    assert run["status"] in ("queued", "starting") and run["input"] == {
        "topic": "three little words"
    }
    status = finished_run(live, "example-job", run["id"])
    assert status["target"]["status"] == "succeeded", status
    assert status["target"]["exit_code"] == 0
    logs = cli_json(live, "agent", "logs", "example-job", "--run", run["id"], "--json")
    lines = [e["message"] for e in logs["events"] if e["source"] == "stdout"]
    assert lines == [
        "job started: topic=three little words",
        "counted 3 word(s)",
        "job finished: wrote result.json and reports/summary.md",
    ]
    outputs = cli_json(live, "agent", "outputs", "example-job", "--run", run["id"], "--json")
    by_name = {o["name"]: o for o in outputs["outputs"]}
    assert by_name["result.json"]["status"] == "available"
    assert by_name["summary.md"]["configured_path"] == "reports"
    human = live.cli("agent", "logs", "example-job", "--run", run["id"], check=True).stdout
    assert " info job started: topic=three little words\n" in human
    table = live.cli("agent", "outputs", "example-job", "--run", run["id"], check=True).stdout
    assert "result.json\tavailable\tfile\t" in table
    # The sandbox is gone, the outputs are kept.
    assert gone(live, status["triage"]["sandbox_id"])
    kept = api(live, "GET", by_name["result.json"]["download_url"])
    assert kept.status_code == 200
    assert json.loads(kept.content) == {"topic": "three little words", "words": 3}


def test_run_follow_prints_the_first_page_of_logs(live, job):
    out = cli_json(
        live, "agent", "run", "example-job", "--input-json", '{"topic": "x"}', "--follow", "--json"
    )
    assert out["run"]["id"] and isinstance(out["logs"]["events"], list)
    assert out["logs"]["events"][0]["event_type"] == "run_starting"
    finished_run(live, "example-job", out["run"]["id"])
    followed = live.cli(
        "agent", "logs", "example-job", "--run", out["run"]["id"], "--follow",
        "--poll-interval-ms", "200", check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "info job started: topic=x" in followed and "run succeeded" in followed


def test_logs_follow_streams_a_live_run(live, tmp_path):
    project = tmp_path / "slow"
    project.mkdir()
    (project / "slow.py").write_text(
        "import time\nfor i in range(4):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.4)\n"
    )
    (project / "nullspace.agent.toml").write_text(
        'name = "slow-job"\nmode = "job"\nentrypoint = "python3 slow.py"\n'
    )
    live.cli("agent", "deploy", "--project-dir", str(project), check=True)
    run = cli_json(live, "agent", "run", "slow-job", "--json")
    followed = live.cli(
        "agent", "logs", "slow-job", "--run", run["id"], "--follow", "--poll-interval-ms", "100",
        check=True, timeout=60,
    ).stdout  # fmt: skip
    ticks = [line for line in followed.splitlines() if " tick " in line]
    assert [t.rsplit(" ", 1)[1] for t in ticks] == ["0", "1", "2", "3"]


def test_failed_run_retained_and_inspected_with_shell(live, job):
    run = cli_json(
        live, "agent", "run", "example-job", "--input-json", '{"fail": true}',
        "--retain-on-failure", "--retention-seconds", "3600", "--json",
    )  # fmt: skip
    status = finished_run(live, "example-job", run["id"])
    assert status["target"]["status"] == "failed"
    assert status["triage"]["failure_phase"] == "entrypoint"
    assert status["triage"]["exit_code"] == 3
    human = live.cli("agent", "status", "example-job", "--run", run["id"], check=True).stdout
    assert "failure: entrypoint entrypoint exited with code 3" in human
    sandbox_id = status["triage"]["sandbox_id"]
    shell = live.cli(
        "agent", "shell", "example-job", "--run", run["id"], "--cmd", "pwd; ls project", check=True
    )
    assert shell.stdout.splitlines() == ["/workspace", "main.py", "nullspace.agent.toml"]
    # Without --run, shell and sandbox pick the latest failed run with a sandbox.
    assert live.cli("agent", "shell", "example-job", "--cmd", "cat .nullspace/input.json",
                    check=True).stdout == '{"fail":true}'  # fmt: skip
    helper = cli_json(live, "agent", "sandbox", "example-job", "--run", run["id"], "--json")
    assert helper["sandbox_id"] == sandbox_id and helper["target_kind"] == "run"
    assert helper["commands"]["destroy"] == f"nullspace sandbox kill {sandbox_id}"
    human = live.cli("agent", "sandbox", "example-job", "--run", run["id"], check=True).stdout
    assert f"Sandbox: {sandbox_id}" in human
    # Every sandbox command works on it: files, exec, snapshot, then destroy by hand.
    files = cli_json(live, "sandbox", "file", "list", sandbox_id, "/workspace/project", "--json")
    assert {f["name"] for f in files} >= {"main.py"}
    assert (
        live.cli("sandbox", "exec", sandbox_id, "--shell", "echo hi", check=True).stdout == "hi\n"
    )
    snap = cli_json(live, "sandbox", "snapshot", "create", sandbox_id)
    assert snap["sandbox_id"] == sandbox_id
    info = cli_json(live, "sandbox", "get", sandbox_id)
    assert info["status"] == "running" and info["timeout_ms"] >= 3_500_000
    live.cli("sandbox", "kill", sandbox_id, check=True)
    gone = live.cli("agent", "shell", "example-job", "--run", run["id"], "--cmd", "pwd")
    assert gone.returncode != 0


def test_egress_rules_reach_the_runs_sandbox(live, tmp_path):
    """`[permissions] allow_out`/`deny_out` become the run's sandbox's egress policy (the
    runtime enforces it: tests/runtime/test_isolation.py::test_allow_out_and_deny_out)."""
    (tmp_path / "nullspace.agent.toml").write_text(
        'name = "egress-job"\nmode = "job"\nentrypoint = "exit 4"\n'
        '[permissions]\ninternet_access = false\nallow_out = ["192.0.2.0/24"]\n'
        'deny_out = ["192.0.2.7/32"]\n'
    )
    cli_json(live, "agent", "deploy", "--project-dir", str(tmp_path), "--json")
    run = cli_json(
        live, "agent", "run", "egress-job", "--retain-on-failure", "--retention-seconds", "600",
        "--json",
    )  # fmt: skip
    status = finished_run(live, "egress-job", run["id"])
    assert status["target"]["status"] == "failed" and status["triage"]["exit_code"] == 4
    sandbox_id = status["triage"]["sandbox_id"]
    shown = api(live, "GET", f"/v1/sandboxes/{sandbox_id}", params={"fields": "id,network"})
    assert shown.json()["network"]["egress_policy"] == {
        "internet_access": False,
        "allow_out": ["192.0.2.0/24"],
        "deny_out": ["192.0.2.7/32"],
    }
    live.cli("sandbox", "kill", sandbox_id, check=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "nullspace.agent.toml").write_text(
        'name = "egress-bad"\nmode = "job"\nentrypoint = "true"\n'
        '[permissions]\ndeny_out = ["not-a-cidr"]\n'
    )
    refused = live.cli("agent", "deploy", "--project-dir", str(bad))
    assert refused.returncode != 0 and "not-a-cidr" in refused.stderr, refused


def test_retained_sandbox_destroyed_when_retention_ends(live, job):
    human = live.cli(
        "agent", "run", "example-job", "--input-json", '{"fail": true}',
        "--retain-on-failure", "--retention-seconds", "2", check=True,
    ).stdout  # fmt: skip
    match = re.match(r"^Run: (adrun_[a-z0-9]+) \((queued|starting)\)$", human.strip())
    assert match, human
    sandbox_id = finished_run(live, "example-job", match.group(1))["triage"]["sandbox_id"]
    wait_for(
        lambda: gone(live, sandbox_id),
        30,
        "the retained sandbox to be destroyed",
    )


def test_failed_run_without_retention_leaves_no_sandbox(live, job):
    run = cli_json(live, "agent", "run", "example-job", "--input-json", '{"fail": true}', "--json")
    status = finished_run(live, "example-job", run["id"])
    assert status["target"]["status"] == "failed"
    assert gone(live, status["triage"]["sandbox_id"])
    refused = live.cli("agent", "shell", "example-job", "--run", run["id"], "--cmd", "pwd")
    assert refused.returncode == 2 and "backing sandbox was already destroyed" in refused.stderr


def test_stop_cancels_a_running_job_and_timeouts_end_runs(live, tmp_path):
    project = tmp_path / "sleeper"
    project.mkdir()
    (project / "nullspace.agent.toml").write_text(
        'name = "sleeper"\nmode = "job"\nentrypoint = "echo sleeping; sleep 300"\n'
        "[resources]\ntimeout_seconds = 2\n"
    )
    live.cli("agent", "deploy", "--project-dir", str(project), check=True)
    timed = cli_json(live, "agent", "run", "sleeper", "--json")
    status = finished_run(live, "sleeper", timed["id"], timeout=30)
    assert status["target"]["status"] == "timed_out"
    assert status["triage"]["failure_phase"] == "entrypoint"
    (project / "nullspace.agent.toml").write_text(
        'name = "sleeper"\nmode = "job"\nentrypoint = "echo sleeping; sleep 300"\n'
    )
    live.cli("agent", "deploy", "--project-dir", str(project), check=True)
    run = cli_json(live, "agent", "run", "sleeper", "--json")
    wait_for(lambda: run_status(live, "sleeper", run["id"])["target"]["status"] == "running")
    stopped = live.cli("agent", "stop", "sleeper", check=True).stdout
    assert stopped.startswith(run["id"])
    status = finished_run(live, "sleeper", run["id"], timeout=20)
    assert status["target"]["status"] == "cancelled"
    assert status["triage"]["failure_phase"] == "cancel"


def test_required_env_names_enforced_and_values_never_stored(live, tmp_path):
    project = tmp_path / "envjob"
    project.mkdir()
    (project / "nullspace.agent.toml").write_text(
        'name = "env-job"\nmode = "job"\nentrypoint = "echo token=$API_TOKEN; echo mode=$MODE; echo mode_length=${#MODE}"\n'
        '[env]\nrequired = ["API_TOKEN"]\noptional = ["MODE"]\n'
    )
    deployed = cli_json(live, "agent", "deploy", "--project-dir", str(project), "--json")
    assert deployed["version"]["env_spec"] == {"required": ["API_TOKEN"], "optional": ["MODE"]}
    missing = live.cli("agent", "run", "env-job")
    assert (
        missing.returncode == 2
        and "missing required env vars for agent run: API_TOKEN" in missing.stderr
    )
    refused = api(
        live,
        "POST",
        f"/v1/agent-deployments/{deployed['deployment']['id']}/runs",
        json={"input": {}},
    )
    assert refused.status_code == 400 and "API_TOKEN" in refused.json()["error"]
    (tmp_path / "run.env").write_text("MODE=fast\n")
    run = cli_json(
        live, "agent", "run", "env-job", "--env", "API_TOKEN=s3cr3t-value", "--env-file",
        str(tmp_path / "run.env"), "--json",
    )  # fmt: skip
    assert finished_run(live, "env-job", run["id"])["target"]["status"] == "succeeded"
    logs = cli_json(live, "agent", "logs", "env-job", "--run", run["id"], "--json")
    lines = [e["message"] for e in logs["events"] if e["source"] == "stdout"]
    assert lines == ["token=[redacted]", "mode=[redacted]", "mode_length=4"]
    everything = json.dumps(
        [
            cli_json(live, "agent", "get", "env-job", "--json"),
            api(
                live, "GET", f"/v1/agent-deployments/{deployed['deployment']['id']}/versions"
            ).json(),
            api(live, "GET", f"/v1/agent-deployments/{deployed['deployment']['id']}/runs").json(),
            logs,
        ]
    )
    assert "s3cr3t-value" not in everything


# --- cache ----------------------------------------------------------------------------------


def test_cache_policies_and_a_reusable_artifact(live, tmp_path):
    project = tmp_path / "cached"
    project.mkdir()
    (project / "requirements.txt").write_text("# nothing to install\n")
    (project / "nullspace.agent.toml").write_text(
        'name = "cached-job"\nmode = "job"\n'
        'install = "mkdir -p .deps && echo installed-once > .deps/marker && echo install ran"\n'
        'entrypoint = "cat .deps/marker"\n'
    )
    deploy = ["agent", "deploy", "--project-dir", str(project), "--json"]
    first = cli_json(live, *deploy)
    assert first["cache"]["status"] == "cache_miss" and first["warnings"]
    run = cli_json(live, "agent", "run", "cached-job", "--json")
    assert finished_run(live, "cached-job", run["id"])["target"]["status"] == "succeeded"
    events = cli_json(live, "agent", "logs", "cached-job", "--run", run["id"], "--json")["events"]
    assert "install ran" in [e["message"] for e in events]

    rebuilt = cli_json(live, *deploy[:-1], "--rebuild", "--json")
    assert rebuilt["cache"]["status"] in ("building", "ready")
    assert rebuilt["cache"]["build"]["build_id"].startswith("adbld_")
    deployment_id = rebuilt["deployment"]["id"]
    version_id = rebuilt["version"]["id"]
    wait_for(
        lambda: api(
            live, "GET", f"/v1/agent-deployments/{deployment_id}/versions/{version_id}"
        ).json()["cache_summary"]["artifact_ready"],
        60,
        "the artifact build",
    )
    # A code change that leaves the install inputs alone hits the artifact.
    (project / "extra.txt").write_text("new file\n")
    hit = cli_json(live, *deploy)
    assert hit["cache"]["status"] == "cache_hit" and hit["cache"]["artifact_ready"] is True
    assert hit["warnings"] == []
    run = cli_json(live, "agent", "run", "cached-job", "--json")
    assert finished_run(live, "cached-job", run["id"])["target"]["status"] == "succeeded"
    messages = [
        e["message"]
        for e in cli_json(live, "agent", "logs", "cached-job", "--run", run["id"], "--json")[
            "events"
        ]
    ]
    assert "installed-once" in messages and "install ran" not in messages
    assert any("cache hit" in m for m in messages)

    bypass = cli_json(live, *deploy[:-1], "--no-cache", "--json")
    assert bypass["cache"]["status"] == "bypassed" and bypass["cache"]["enabled"] is False
    run = cli_json(live, "agent", "run", "cached-job", "--json")
    assert finished_run(live, "cached-job", run["id"])["target"]["status"] == "succeeded"
    messages = [
        e["message"]
        for e in cli_json(live, "agent", "logs", "cached-job", "--run", run["id"], "--json")[
            "events"
        ]
    ]
    assert "install ran" in messages

    # Changing an install input misses the cache again.
    (project / "requirements.txt").write_text("# changed\n")
    assert cli_json(live, *deploy)["cache"]["status"] == "cache_miss"


# --- services -------------------------------------------------------------------------------


def test_service_url_serves_its_page_through_the_gateway(live, service):
    url = live.cli("agent", "url", "example-service", check=True, timeout=60).stdout.strip()
    assert url.startswith("http://8080-sb-") and "edge_token=" in url
    page = open_service(live, url)
    assert page.status_code == 200 and "hello from the example service" in page.text
    status = cli_json(live, "agent", "status", "example-service", "--json")
    assert status["target_kind"] == "service" and status["target"]["status"] == "ready"
    service_id = status["target"]["id"]
    by_id = cli_json(live, "agent", "status", "example-service", "--service", service_id, "--json")
    assert by_id["triage"]["url"] == url and by_id["triage"]["port"] == 8080
    logs = cli_json(live, "agent", "logs", "example-service", "--service", service_id, "--json")
    messages = [e["message"] for e in logs["events"]]
    assert "listening on 0.0.0.0:8080" in messages and "GET / -> served" in messages
    shell = live.cli("agent", "shell", "example-service", "--cmd", "ls project", check=True)
    assert "server.py" in shell.stdout


def test_deploy_then_restart_runs_the_new_version_at_the_same_url(live, projects, service):
    url = live.cli("agent", "url", "example-service", check=True, timeout=60).stdout.strip()
    source = projects / "service" / "server.py"
    source.write_text(source.read_text().replace("hello from the example service", "hello again"))
    deployed = cli_json(
        live, "agent", "deploy", "--project-dir", str(projects / "service"), "--json"
    )
    restarted = live.cli("agent", "restart", "example-service", check=True).stdout
    assert restarted.split()[1] == "starting"
    status = wait_for(
        lambda: (
            (s := cli_json(live, "agent", "status", "example-service", "--json"))["target"][
                "status"
            ]
            == "ready"
            and s
        ),
        60,
        "the restarted service",
    )
    assert status["target"]["version_id"] == deployed["version"]["id"]
    assert status["triage"]["url"] == url
    page = open_service(live, url)
    assert "hello again" in page.text and deployed["version"]["id"] in page.text


def test_stop_revokes_the_url_and_restart_starts_again(live, service):
    url = live.cli("agent", "url", "example-service", check=True, timeout=60).stdout.strip()
    status = cli_json(live, "agent", "status", "example-service", "--json")
    sandbox_id = status["triage"]["sandbox_id"]
    stopped = cli_json(live, "agent", "stop", "example-service", "--json")
    assert stopped["status"] == "stopped" and stopped["public_url"] is None
    assert via_gateway(live, url).status_code in (403, 404, 410)
    assert gone(live, sandbox_id)
    live.cli("agent", "restart", "example-service", check=True)
    new_url = live.cli("agent", "url", "example-service", check=True, timeout=60).stdout.strip()
    assert open_service(live, new_url).status_code == 200


def test_stop_can_retain_the_service_sandbox(live, service):
    live.cli("agent", "url", "example-service", check=True, timeout=60)
    sandbox_id = cli_json(live, "agent", "status", "example-service", "--json")["triage"][
        "sandbox_id"
    ]
    out = live.cli("agent", "stop", "example-service", "--retain-sandbox", check=True).stdout
    assert f"Sandbox: {sandbox_id}" in out
    assert cli_json(live, "sandbox", "get", sandbox_id)["status"] == "running"
    live.cli("agent", "restart", "example-service", check=True)
    wait_for(
        lambda: (
            cli_json(live, "agent", "status", "example-service", "--json")["target"]["status"]
            == "ready"
        ),
        60,
        "the restart in the retained sandbox",
    )
    assert (
        cli_json(live, "agent", "status", "example-service", "--json")["triage"]["sandbox_id"]
        == sandbox_id
    )


def test_a_service_that_never_listens_fails_readiness(live, tmp_path):
    project = tmp_path / "deaf"
    project.mkdir()
    (project / "nullspace.agent.toml").write_text(
        'name = "deaf-service"\nmode = "service"\nentrypoint = "sleep 300"\n'
        '[service]\nport = 8080\nreadiness = { type = "tcp", timeout_seconds = 2 }\n'
    )
    live.cli("agent", "deploy", "--project-dir", str(project), check=True)
    out = live.cli("agent", "url", "deaf-service", check=True, timeout=60).stdout
    assert "has no public URL yet" in out
    status = wait_for(
        lambda: (
            (s := cli_json(live, "agent", "status", "deaf-service", "--json"))["target"]["status"]
            == "failed"
            and s
        ),
        30,
        "readiness to fail",
    )
    assert status["triage"]["failure_phase"] == "readiness"
    assert "0.0.0.0" in status["triage"]["failure_reason"]
    # Its sandbox stays an hour for debugging, then goes.
    service_id, sandbox_id = status["target"]["id"], status["triage"]["sandbox_id"]
    shell = live.cli(
        "agent", "shell", "deaf-service", "--service", service_id, "--cmd", "ls project", check=True
    )
    assert "nullspace.agent.toml" in shell.stdout
    assert 3_500_000 <= cli_json(live, "sandbox", "get", sandbox_id)["timeout_ms"] <= 3_601_000


HEALTH_SERVER = """import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        sick = os.path.exists("sick")
        self.send_response(500 if sick and self.path == "/healthz" else 200)
        self.end_headers()
        self.wfile.write(b"fine" if not sick else b"sick")

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_health_is_watched_ready_unhealthy_ready(live, tmp_path):
    project = tmp_path / "health"
    project.mkdir()
    (project / "server.py").write_text(HEALTH_SERVER)
    (project / "nullspace.agent.toml").write_text(
        'name = "health-service"\nmode = "service"\nentrypoint = "python3 server.py"\n'
        '[service]\nport = 9000\nreadiness = { type = "http", path = "/healthz" }\n'
    )
    live.cli("agent", "deploy", "--project-dir", str(project), check=True)
    assert live.cli("agent", "url", "health-service", check=True, timeout=60).stdout.startswith(
        "http://9000-"
    )

    def status() -> str:
        return cli_json(live, "agent", "status", "health-service", "--json")["target"]["status"]

    assert status() == "ready"
    live.cli("agent", "shell", "health-service", "--cmd", "touch project/sick", check=True)
    wait_for(lambda: status() == "unhealthy", 30, "the service to turn unhealthy")
    logs = cli_json(live, "agent", "status", "health-service", "--json")["logs"]["latest_event"]
    assert logs["event_type"] == "service_unhealthy" and "HTTP 500" in logs["message"]
    live.cli("agent", "shell", "health-service", "--cmd", "rm project/sick", check=True)
    wait_for(lambda: status() == "ready", 30, "the service to be ready again")
    live.cli("agent", "stop", "health-service", check=True)


# --- API edges: digests, idempotency, other projects -------------------------------------------


def test_bundle_digest_recomputed_and_mismatch_refused(live, job):
    deployment_id = job["deployment"]["id"]
    versions = api(live, "GET", f"/v1/agent-deployments/{deployment_id}/versions").json()["items"]
    source = versions[-1]
    created = api(
        live,
        "POST",
        f"/v1/agent-deployments/{deployment_id}/versions",
        json={
            "bundle_digest": source["bundle_digest"],
            "bundle_manifest": source["bundle_manifest"],
            "config": {k: v for k, v in source["config"].items() if k != "bundle"},
        },
    )
    assert created.status_code == 201, created.text
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"print('tampered')\n"
        info = tarfile.TarInfo("main.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    refused = api(
        live,
        "PUT",
        f"/v1/agent-deployments/{deployment_id}/versions/{created.json()['id']}/bundle",
        content=buffer.getvalue(),
        headers={
            "Content-Type": "application/x-tar",
            "X-Nullspace-Bundle-Digest": source["bundle_digest"],
        },
    )
    assert refused.status_code == 400 and refused.json()["code"] == "bundle_digest_mismatch"
    assert refused.json()["details"]["expected"] == source["bundle_digest"]
    version = api(
        live, "GET", f"/v1/agent-deployments/{deployment_id}/versions/{created.json()['id']}"
    ).json()
    assert version["status"] == "created"  # nothing kept, nothing activated
    assert (
        cli_json(live, "agent", "get", "example-job", "--json")["active_version_id"]
        != version["id"]
    )


def test_run_create_honours_idempotency_keys(live, job):
    first = cli_json(
        live, "agent", "run", "example-job", "--idempotency-key", "same-run-1", "--json"
    )
    again = cli_json(
        live, "agent", "run", "example-job", "--idempotency-key", "same-run-1", "--json"
    )
    assert again["id"] == first["id"]
    runs = api(live, "GET", f"/v1/agent-deployments/{job['deployment']['id']}/runs?limit=200")
    assert [r["id"] for r in runs.json()["items"]].count(first["id"]) == 1
    finished_run(live, "example-job", first["id"])


def test_other_projects_deployments_are_not_found(live, job):
    other_key = live.manage(
        "bootstrap", "--email", "other@example.com", "--team", "other", "--project", "other"
    )
    path = f"/v1/agent-deployments/{job['deployment']['id']}"
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/runs"), ("POST", "/runs")):
        answer = httpx.request(
            method,
            f"{live.url}{path}{suffix}",
            headers={"Authorization": f"Bearer {other_key}"},
            json={} if method == "POST" else None,
            timeout=10,
        )
        assert answer.status_code == 404, (method, suffix, answer.text)
    listed = httpx.get(
        f"{live.url}/v1/agent-deployments", headers={"Authorization": f"Bearer {other_key}"}
    ).json()
    assert listed["items"] == []


# --- delete (last: it removes what the tests above used) ----------------------------------------


def test_delete_removes_the_deployment_and_its_sandboxes(live, job, service):
    live.cli("agent", "url", "example-service", check=True, timeout=60)
    sandbox_id = cli_json(live, "agent", "status", "example-service", "--json")["triage"][
        "sandbox_id"
    ]
    deleted = cli_json(live, "agent", "delete", "example-service", "--yes", "--json")
    assert deleted == {
        "deleted": True,
        "id": service["deployment"]["id"],
        "name": "example-service",
    }
    assert gone(live, sandbox_id)
    missing = live.cli("agent", "get", "example-service")
    assert missing.returncode == 2 and "not found by name" in missing.stderr
    human = live.cli("agent", "delete", "example-job", "--yes", check=True).stdout
    assert human.strip() == f"Deleted example-job ({job['deployment']['id']})"
    answer = api(live, "GET", f"/v1/agent-deployments/{job['deployment']['id']}")
    assert answer.status_code == 404
