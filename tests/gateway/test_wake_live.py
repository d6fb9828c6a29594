"""Wake on traffic with no hanging window: a request sent right after a pause, while the
gateway still remembers the sandbox as running, wakes it and gets its answer instead of
waiting on a frozen app until the first-byte timeout. A real sandbox, the real CLI, on
the default server and the fleet entry."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.live import ROOT, VENV_BIN, free_port, start_live_server

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("wake"), PREVIEW_RESUME_WAIT_SECONDS="20")
    port = free_port()
    fleet = subprocess.Popen(
        [str(VENV_BIN / "uvicorn"), "gateway.asgi:application", "--http",
         "gateway.httpserver:HttpProtocol", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server.fleet_port = port
    yield server
    fleet.terminate()
    fleet.wait(10)
    server.stop()


@pytest.mark.parametrize("entry", ["default", "fleet"])
def test_a_request_right_after_a_pause_wakes_the_sandbox(live, entry):
    sandbox_id = live.new_sandbox("--auto-resume", "--timeout", "600")
    web = free_port()
    live.cli("sandbox", "exec", sandbox_id, "--background", "--shell",
             f"python3 -m http.server {web} --bind 0.0.0.0", check=True)  # fmt: skip
    created = live.cli(
        "sandbox", "preview-url", "create", sandbox_id, str(web), "--wait", "--json", check=True
    )
    link = httpx.URL(json.loads(created.stdout)["url"])
    port = live.port if entry == "default" else live.fleet_port
    base = f"http://127.0.0.1:{port}"
    headers = {"Host": link.host}
    bootstrap = httpx.get(f"{base}/?{link.query.decode()}", headers=headers)
    assert bootstrap.status_code == 303
    headers["Cookie"] = bootstrap.headers["set-cookie"].split(";")[0]
    api = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.api_key}"})

    assert httpx.get(f"{base}/", headers=headers, timeout=10).status_code == 200
    # The gateway now holds "running" in its cache for a couple of seconds.
    paused = api.post(f"/v1/sandboxes/{sandbox_id}/hibernate", timeout=30)
    assert paused.status_code == 200, paused.text
    started = time.monotonic()
    response = httpx.get(f"{base}/", headers=headers, timeout=60)
    assert response.status_code == 200
    assert time.monotonic() - started < 25  # resumed, not held to the 120 s first-byte timeout
    # The thawed app can answer a moment before the wake records "running": wait for it.
    deadline = time.monotonic() + 10
    while (status := api.get(f"/v1/sandboxes/{sandbox_id}").json()["status"]) != "running":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    print(f"{entry}: answered {time.monotonic() - started:.2f} s after the pause")
