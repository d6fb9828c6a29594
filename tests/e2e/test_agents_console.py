"""Agent deployment pages in a real browser (Debian chromium via Playwright) against a live
server: the empty state's CLI commands, a job deployed with the real CLI whose run page
shows log lines as they are printed (server-sent events, no reload), its outputs to
download and its sandbox link; a service's page with its URL, which opens the service
through the gateway. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import add_user, needs_chromium, shot, sign_in

pytestmark = [pytest.mark.e2e, needs_chromium]

SLOW_JOB = """import pathlib, time
for i in range(6):
    print(f"step {i}", flush=True)
    time.sleep(0.7)
pathlib.Path("result.json").write_text('{"ok": true}')
"""


def test_job_run_page_streams_its_log_and_offers_outputs(live, page, tmp_path):
    email = add_user(live, "ada")
    sign_in(page, live, email)
    page.goto(f"{live.url}/t/ada/p/main/agents/")
    page.wait_for_selector("#agents-empty")
    assert "nullspace agent deploy" in page.inner_text("#agent-deploy-snippet")
    shot(page, "agents-empty")

    project = tmp_path / "slow"
    project.mkdir()
    (project / "main.py").write_text(SLOW_JOB)
    (project / "nullspace.agent.toml").write_text(
        'name = "slow-report"\nmode = "job"\nentrypoint = "python3 main.py"\n'
        '[outputs]\npaths = ["result.json"]\n'
    )
    live.cli("agent", "deploy", "--project-dir", str(project), check=True)
    run = json.loads(live.cli("agent", "run", "slow-report", "--json", check=True).stdout)
    deployment_id = run["deployment_id"]

    page.goto(f"{live.url}/t/ada/p/main/agents/{deployment_id}/runs/{run['id']}/")
    # Lines printed after the page loaded appear without a reload.
    # A locator, not wait_for_function: that evaluates a string, which the console's CSP refuses.
    page.wait_for_selector("#run-log:has-text('step 4')", timeout=20_000)
    shot(page, "agents-run-live")
    page.wait_for_selector("#run-status.agent-succeeded", timeout=20_000)
    page.wait_for_selector("#run-outputs a:has-text('Download')")
    log = page.inner_text("#run-log")
    assert [int(n) for n in re.findall(r"step (\d)", log)] == [0, 1, 2, 3, 4, 5]
    assert "sb_" in page.inner_text("#run-state")
    with page.expect_download() as download:
        page.click("#run-outputs a:has-text('Download')")
    assert download.value.suggested_filename == "result.json"
    assert open(download.value.path()).read() == '{"ok": true}'
    shot(page, "agents-run-done")

    page.goto(f"{live.url}/t/ada/p/main/agents/{deployment_id}/")
    assert "Succeeded" in page.inner_text("#agent-runs")
    assert "v1" in page.inner_text("#agent-versions")
    shot(page, "agents-deployment")


def test_service_page_links_its_url(live, page):
    from tests.live import ROOT

    email = add_user(live, "bo")
    sign_in(page, live, email)
    live.cli(
        "agent",
        "deploy",
        "--project-dir",
        str(ROOT / "examples" / "agents" / "service"),
        check=True,
    )
    url = live.cli("agent", "url", "example-service", check=True, timeout=60).stdout.strip()
    assert url.startswith("http://8080-")
    deployment = json.loads(
        live.cli("agent", "get", "example-service", "--json", check=True).stdout
    )
    page.goto(f"{live.url}/t/bo/p/main/agents/{deployment['id']}/")
    link = page.locator("#agent-services a.service-url")
    assert link.get_attribute("href") == url
    shot(page, "agents-service")
    service = page.context.new_page()
    service.goto(url)
    assert "hello from the example service" in service.inner_text("h1")
    service.close()
    page.click("#agent-services button:has-text('Stop')")
    page.wait_for_selector("#agent-services .agent-stopped")
    assert page.locator("#agent-services a.service-url").count() == 0
