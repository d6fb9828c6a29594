"""The real `nullspace sandbox code ...` (0.1.9) against a live server, on a sandbox of the
`code-interpreter` template: each command checked on what it did in the kernel."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import time

import httpx
import pytest

from tests.live import VENV_BIN, LiveServer

pytestmark = pytest.mark.cli


def cli_json(live: LiveServer, *args: str, **kwargs):
    return json.loads(live.cli(*args, check=True, **kwargs).stdout)


def api(live: LiveServer, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=live.url,
        headers={"Authorization": f"Bearer {key or live.api_key}"},
        timeout=120,
    )


def poll(check, *, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sb(live):
    made = cli_json(
        live, "sandbox", "create", "--template", "code-interpreter", "--cwd", "/workspace",
        "--timeout", "900",
    )["id"]  # fmt: skip
    yield made
    live.cli("sandbox", "kill", made)


def run_code(live: LiveServer, sb: str, code: str, *extra: str) -> subprocess.CompletedProcess:
    return live.cli("sandbox", "code", "run", sb, code, "--json", *extra)


def test_run_prints_hello_as_json(live, sb):
    result = run_code(live, sb, "print('hello')")
    assert result.returncode == 0, result.stderr
    execution = json.loads(result.stdout)
    assert execution["logs"] == {"stdout": ["hello\n"], "stderr": []}
    assert execution["error"] is None
    assert isinstance(execution["execution_count"], int)


def test_state_persists_across_runs_and_last_value_is_the_result(live, sb):
    assert run_code(live, sb, "answer = 41").returncode == 0
    execution = json.loads(run_code(live, sb, "answer + 1").stdout)
    assert execution["results"] == [{"text": "42", "is_main_result": True}]
    # Plain output (no --json): the result's text, and stdout as it streams.
    plain = live.cli("sandbox", "code", "run", sb, "print('x'); answer", check=True)
    assert plain.stdout == "x\n41\n"


def test_errors_stderr_and_env(live, sb):
    failed = run_code(live, sb, "import sys; print('warn', file=sys.stderr); 1/0")
    assert failed.returncode == 1
    execution = json.loads(failed.stdout)
    assert execution["logs"]["stderr"] == ["warn\n"]
    assert execution["error"]["name"] == "ZeroDivisionError"
    assert "division by zero" in execution["error"]["value"]
    assert "\x1b[" not in execution["error"]["traceback"]  # colours left out

    with_env = run_code(
        live, sb, "import os; print(os.environ['GREETING'])", "--env", "GREETING=hi"
    )
    assert json.loads(with_env.stdout)["logs"]["stdout"] == ["hi\n"]
    # The variable was for that execution only.
    after = run_code(live, sb, "import os; print(os.environ.get('GREETING'))")
    assert json.loads(after.stdout)["logs"]["stdout"] == ["None\n"]


def test_rich_results_html_table_and_image(live, sb):
    code = "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})"
    result = json.loads(run_code(live, sb, code).stdout)["results"][0]
    assert "<table" in result["html"] and result["is_main_result"] is True
    assert "a  b" in result["text"]
    # The SDK gets the figure's PNG itself, not just its description.
    with api(live) as client, client.stream(
        "POST", f"/v1/sandboxes/{sb}/code/execute",
        json={"code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"},
    ) as response:  # fmt: skip
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    images = [e for e in events if e["type"] == "result" and e.get("png")]
    assert len(images) == 1
    assert base64.b64decode(images[0]["png"]).startswith(b"\x89PNG\r\n\x1a\n")
    shown = [e["artifact"] for e in events if e["type"] == "artifact"]
    assert [a["kind"] for a in shown] == ["image"] and shown[0]["mime_type"] == "image/png"
    # The figure's data comes along as a chart.
    assert images[0]["chart"]["type"] == "line"
    assert [(p["x"], p["y"]) for p in images[0]["chart"]["elements"]] == [(0, 1), (1, 3), (2, 2)]

    bars = (
        "import matplotlib.pyplot as plt\nplt.bar(['A', 'B'], [10, 20], label='Revenue')\n"
        "plt.title('Revenue')\nplt.xlabel('Quarter')\nplt.show()"
    )
    client_view = json.loads(run_code(live, sb, bars).stdout)
    chart = client_view["results"][0]["chart"]
    assert (chart["type"], chart["title"], chart["x_label"]) == ("bar", "Revenue", "Quarter")
    assert chart["elements"] == [
        {"label": "A", "value": 10, "group": "Revenue"},
        {"label": "B", "value": 20, "group": "Revenue"},
    ]
    # An SVG shown is kept as an image artifact too.
    svg = "from IPython.display import SVG\nSVG(data=\"<svg xmlns='http://www.w3.org/2000/svg' width='9' height='9'/>\")"
    shown_svg = json.loads(run_code(live, sb, svg).stdout)
    assert shown_svg["results"][0]["svg"].startswith("<svg")
    assert [a["mime_type"] for a in shown_svg["artifacts"]] == ["image/svg+xml"]


def test_events_stream_as_they_happen(live, sb):
    """The first line arrives while the code still waits for a file only the test writes."""
    code = (
        "import os, time\nprint('first', flush=True)\n"
        "while not os.path.exists('/tmp/go-on'):\n    time.sleep(0.05)\nprint('second')"
    )
    with (
        api(live) as client,
        client.stream("POST", f"/v1/sandboxes/{sb}/code/execute", json={"code": code}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        seen = []
        for line in lines:
            if line.startswith("data: "):
                event = json.loads(line[6:])
                seen.append(event)
                if event["type"] == "stdout":
                    break
        assert seen[-1]["text"] == "first\n"
        live.cli("sandbox", "exec", sb, "--shell", "touch /tmp/go-on", check=True)
        rest = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [e["text"] for e in rest if e["type"] == "stdout"] == ["second\n"]


def test_contexts_create_with_cwd_list_restart_remove(live, sb):
    live.cli("sandbox", "exec", sb, "--shell", "mkdir -p /workspace/sub", check=True)
    context = cli_json(live, "sandbox", "code", "context", "create", sb, "--cwd", "/workspace/sub")
    assert context["cwd"] == "/workspace/sub" and context["language"] == "python"
    ctx = context["id"]
    where = run_code(live, sb, "import os; secret = 7; print(os.getcwd())", "--context", ctx)
    assert json.loads(where.stdout)["logs"]["stdout"] == ["/workspace/sub\n"]
    # Contexts are separate kernels: the default one does not see this one's variables.
    other = json.loads(run_code(live, sb, "print('secret' in globals())").stdout)
    assert other["logs"]["stdout"] == ["False\n"]

    listed = cli_json(live, "sandbox", "code", "context", "list", sb)
    assert ctx in [c["id"] for c in listed]

    live.cli("sandbox", "code", "context", "restart", sb, ctx, check=True)
    gone = run_code(live, sb, "secret", "--context", ctx)
    assert gone.returncode == 1 and json.loads(gone.stdout)["error"]["name"] == "NameError"

    live.cli("sandbox", "code", "context", "remove", sb, ctx, check=True)
    assert ctx not in [c["id"] for c in cli_json(live, "sandbox", "code", "context", "list", sb)]
    missing = run_code(live, sb, "1", "--context", ctx)
    assert missing.returncode != 0 and "context_not_found" in missing.stdout + missing.stderr


def test_matplotlib_figure_is_an_artifact_listed_previewed_downloaded(live, sb, tmp_path):
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots()\nax.plot([0, 1, 4, 9])\nfig.savefig('chart.png')\n"
        "open('notes.txt', 'w').write('hello artifacts')"
    )
    execution = json.loads(run_code(live, sb, code).stdout)
    made = {a["name"]: a for a in execution["artifacts"]}
    assert set(made) == {"chart.png", "notes.txt"}, made
    chart = made["chart.png"]
    assert chart["kind"] == "file" and chart["mime_type"] == "image/png"
    assert chart["metadata"] == {"path": "/workspace/chart.png"}

    listed = cli_json(live, "sandbox", "code", "artifact", "list", sb, "--kind", "file")
    assert chart["id"] in [a["id"] for a in listed["items"]]
    got = cli_json(live, "sandbox", "code", "artifact", "get", sb, chart["id"])
    assert got["sha256"] == chart["sha256"] and got["size_bytes"] == chart["size_bytes"]

    target = tmp_path / "result.png"
    live.cli("sandbox", "code", "artifact", "download", sb, chart["id"], "--output", str(target),
             check=True)  # fmt: skip
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(data).hexdigest() == chart["sha256"] and len(data) == chart["size_bytes"]

    preview = tmp_path / "preview.png"
    live.cli("sandbox", "code", "artifact", "preview", sb, chart["id"], "--output", str(preview),
             check=True)  # fmt: skip
    assert preview.read_bytes() == data
    text = tmp_path / "notes.txt"
    live.cli("sandbox", "code", "artifact", "preview", sb, made["notes.txt"]["id"], "-o",
             str(text), check=True)  # fmt: skip
    assert text.read_text() == "hello artifacts"

    # A file the next run does not touch is not reported again.
    again = json.loads(run_code(live, sb, "1 + 1").stdout)
    assert again["artifacts"] == []

    live.cli("sandbox", "code", "artifact", "delete", sb, chart["id"], check=True)
    missing = live.cli("sandbox", "code", "artifact", "get", sb, chart["id"])
    assert missing.returncode == 3 and f"Artifact {chart['id']} not found" in missing.stderr


def test_interrupt_stops_a_long_loop_and_keeps_the_state(live, sb):
    ctx = cli_json(live, "sandbox", "code", "context", "create", sb)["id"]
    assert run_code(live, sb, "kept = 'yes'", "--context", ctx).returncode == 0
    loop = subprocess.Popen(
        [str(VENV_BIN / "nullspace"), "sandbox", "code", "run", sb,
         "import time\nwhile True:\n    time.sleep(0.05)", "--context", ctx, "--json"],
        cwd=live.data_dir, env=live.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        with api(live) as client:
            poll(
                lambda: client.get(
                    f"/v1/sandboxes/{sb}/code/runs", params={"context_id": ctx, "status": "running"}
                ).json()["items"],
                what="the loop to run",
            )
        live.cli("sandbox", "code", "context", "interrupt", sb, ctx, check=True)
        stdout, _ = loop.communicate(timeout=60)
    finally:
        loop.kill()
    assert loop.returncode == 1
    assert json.loads(stdout)["error"]["name"] == "KeyboardInterrupt"
    after = json.loads(run_code(live, sb, "print(kept)", "--context", ctx).stdout)
    assert after["logs"]["stdout"] == ["yes\n"]


def test_timeout_interrupts_the_run(live, sb):
    result = run_code(live, sb, "import time\nwhile True:\n    time.sleep(0.05)", "--timeout", "2")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["name"] == "TimeoutError"


def test_run_jobs_create_wait_list_get_cancel(live, sb):
    ctx = cli_json(live, "sandbox", "code", "context", "create", sb)["id"]
    created = cli_json(live, "sandbox", "code", "run-job", "create", sb, ctx, "print(6 * 7)")
    assert created["context_id"] == ctx and created["status"] in ("queued", "running", "succeeded")
    done = cli_json(live, "sandbox", "code", "run-job", "wait", sb, created["id"],
                    "--poll-interval", "0.2", "--timeout", "120")  # fmt: skip
    assert done["status"] == "succeeded"
    assert done["execution"]["logs"]["stdout"] == ["42\n"]
    assert done["started_at"] and done["completed_at"]

    slow = cli_json(live, "sandbox", "code", "run-job", "create", sb, ctx,
                    "import time\nwhile True:\n    time.sleep(0.05)")  # fmt: skip
    poll(
        lambda: (
            cli_json(live, "sandbox", "code", "run-job", "get", sb, slow["id"])["status"]
            == "running"
        ),
        what="the background run to start",
    )
    cancelled = cli_json(live, "sandbox", "code", "run-job", "cancel", sb, slow["id"])
    assert cancelled["cancel_requested_at"]
    final = poll(
        lambda: (
            (r := cli_json(live, "sandbox", "code", "run-job", "get", sb, slow["id"]))["status"]
            in ("cancelled", "failed", "succeeded")
            and r
        ),
        what="the cancel",
    )
    assert final["status"] == "cancelled"
    assert final["execution"]["error"]["name"] == "KeyboardInterrupt"

    listed = cli_json(live, "sandbox", "code", "run-job", "list", sb, "--context-id", ctx)
    assert [r["id"] for r in listed["items"]] == [slow["id"], created["id"]]  # newest first
    page = cli_json(live, "sandbox", "code", "run-job", "list", sb, "--context-id", ctx,
                    "--limit", "1")  # fmt: skip
    assert len(page["items"]) == 1 and page["next_cursor"]


def test_bad_input_is_a_clear_4xx(live, sb):
    base = f"/v1/sandboxes/{sb}/code"
    with api(live) as client:
        cases = [
            ("POST", "/execute", {"code": 5}, 400, "invalid_request"),
            ("POST", "/execute", {"code": "1", "timeout": 0}, 400, "invalid_request"),
            ("POST", "/execute", {"code": "1", "language": "r"}, 400, "unsupported_language"),
            ("POST", "/execute", {"code": "1", "bogus": 1}, 400, "invalid_request"),
            ("POST", "/execute", {"code": "1", "context_id": "ctx_nope"}, 404, "context_not_found"),
            ("POST", "/execute", {"code": "1", "envs": {"A=B": "x"}}, 400, "invalid_request"),
            ("POST", "/execute", {"code": "1", "envs": ["A"]}, 400, "invalid_request"),
            ("POST", "/contexts", {"cwd": "/no/such/dir"}, 400, "invalid_request"),
            ("POST", "/contexts", {"cwd": "/workspace/.nullspace"}, 400, "invalid_request"),
            ("POST", "/contexts", {"language": "javascript"}, 400, "unsupported_language"),
            ("POST", "/runs", {"code": "1"}, 400, "invalid_request"),
            ("GET", "/runs?status=nonsense", None, 400, "invalid_request"),
            ("GET", "/runs?cursor=garbage", None, 400, "invalid_request"),
            ("GET", "/runs/crun_nope", None, 404, "run_not_found"),
            ("POST", "/runs/crun_nope/cancel", None, 404, "run_not_found"),
            ("GET", "/artifacts/art_nope", None, 404, "artifact_not_found"),
            ("POST", "/contexts/ctx_nope/restart", None, 404, "context_not_found"),
        ]
        for method, path, body, status, code in cases:
            answer = client.request(method, base + path, json=body)
            assert (answer.status_code, answer.json()["code"]) == (status, code), (path, body)
    bad = live.cli("sandbox", "code", "context", "create", sb, "--language", "ruby")
    assert bad.returncode != 0 and "Language 'ruby' is not available" in bad.stderr


def test_another_projects_sandbox_and_context_are_404(live, sb):
    ctx = cli_json(live, "sandbox", "code", "context", "create", sb)["id"]
    other_key = live.manage(
        "bootstrap", "--email", "other@example.com", "--team", "other", "--project", "other"
    )
    base = f"/v1/sandboxes/{sb}/code"
    with api(live, other_key) as client:
        for method, path in [
            ("GET", "/contexts"),
            ("POST", f"/contexts/{ctx}/interrupt"),
            ("DELETE", f"/contexts/{ctx}"),
            ("GET", "/runs"),
            ("GET", "/artifacts"),
        ]:
            answer = client.request(method, base + path)
            assert (answer.status_code, answer.json()["code"]) == (404, "sandbox_not_found")
        answer = client.post(base + "/execute", json={"code": "print(1)"})
        assert (answer.status_code, answer.json()["code"]) == (404, "sandbox_not_found")
        # Its own sandbox does not reach this context either.
        own = client.post("/v1/sandboxes", json={"template": "base"}).json()["id"]
        try:
            answer = client.post(f"/v1/sandboxes/{own}/code/contexts/{ctx}/restart")
            assert (answer.status_code, answer.json()["code"]) == (404, "context_not_found")
        finally:
            client.delete(f"/v1/sandboxes/{own}")
    assert ctx in [c["id"] for c in cli_json(live, "sandbox", "code", "context", "list", sb)]


def test_a_sandbox_without_a_kernel_says_what_to_do(live):
    plain = cli_json(live, "sandbox", "create", "--template", "base", "--timeout", "300")["id"]
    try:
        result = live.cli("sandbox", "code", "run", plain, "print(1)", "--json")
        assert result.returncode != 0
        said = result.stdout + result.stderr  # --json puts the error on stdout
        assert "code_interpreter_unavailable" in said and "--template code-interpreter" in said
    finally:
        live.cli("sandbox", "kill", plain)


def test_runs_arriving_together_share_one_new_kernel(live):
    fresh = cli_json(
        live, "sandbox", "create", "--template", "code-interpreter", "--timeout", "300"
    )["id"]
    pids: list[str] = []
    answers: list[str] = []

    def run_one() -> None:
        with api(live) as client, client.stream(
            "POST", f"/v1/sandboxes/{fresh}/code/execute", json={"code": "import os; print(os.getpid())"}
        ) as response:  # fmt: skip
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "stdout":
                    pids.append(json.loads(line[6:])["text"])
                elif response.status_code != 200 or line.startswith("data: "):
                    answers.append(f"{response.status_code} {line}")

    try:
        threads = [threading.Thread(target=run_one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert len(pids) == 3 and len(set(pids)) == 1, (
            pids,
            answers,
        )  # one default context, one kernel
        kernels = live.cli("sandbox", "exec", fresh, "--shell", "pgrep -fc ipykernel", check=True)
        assert kernels.stdout.strip() == "1"
    finally:
        live.cli("sandbox", "kill", fresh)


def test_a_failing_run_does_not_abort_the_run_queued_behind_it(live, sb):
    ctx = cli_json(live, "sandbox", "code", "context", "create", sb)["id"]
    first = "import os, time\nwhile not os.path.exists('/tmp/fail-now'):\n    time.sleep(0.05)\nraise ValueError('first')"
    results: dict[str, subprocess.CompletedProcess] = {}

    def run(name: str, code: str) -> None:
        results[name] = run_code(live, sb, code, "--context", ctx)

    failing = threading.Thread(target=run, args=("first", first))
    failing.start()
    with api(live) as client:
        runs_url = f"/v1/sandboxes/{sb}/code/runs"
        poll(
            lambda: client.get(runs_url, params={"context_id": ctx, "status": "running"}).json()[
                "items"
            ],
            what="the first run to start",
        )
        queued = threading.Thread(target=run, args=("second", "print('second ran')"))
        queued.start()
        poll(
            lambda: client.get(runs_url, params={"context_id": ctx, "status": "queued"}).json()[
                "items"
            ],
            what="the second run to wait in the kernel's queue",
        )
        time.sleep(1)  # its request reaches the kernel (the test passes either way)
    live.cli("sandbox", "exec", sb, "--shell", "touch /tmp/fail-now", check=True)
    failing.join(timeout=120)
    queued.join(timeout=120)
    assert json.loads(results["first"].stdout)["error"]["name"] == "ValueError"
    assert json.loads(results["second"].stdout)["logs"]["stdout"] == ["second ran\n"]


def test_contexts_follow_a_resume_under_a_new_id(live):
    paused = cli_json(
        live, "sandbox", "create", "--template", "code-interpreter", "--timeout", "300"
    )["id"]
    resumed = None
    try:
        ctx = cli_json(live, "sandbox", "code", "context", "create", paused)["id"]
        assert run_code(live, paused, "kept = 'across the pause'", "--context", ctx).returncode == 0
        live.cli("sandbox", "pause", paused, check=True)
        snapshot = cli_json(live, "sandbox", "get", paused)["snapshot_id"]
        resumed = cli_json(live, "sandbox", "resume", snapshot)["id"]
        assert resumed != paused
        assert [c["id"] for c in cli_json(live, "sandbox", "code", "context", "list", resumed)] == [
            ctx
        ]
        after = json.loads(run_code(live, resumed, "print(kept)", "--context", ctx).stdout)
        assert after["logs"]["stdout"] == ["across the pause\n"]
    finally:
        live.cli("sandbox", "kill", resumed or paused)


def test_code_that_ignores_the_interrupt_ends_its_kernel_at_the_timeout(live, sb):
    ctx = cli_json(live, "sandbox", "code", "context", "create", sb)["id"]
    assert run_code(live, sb, "state = 1", "--context", ctx).returncode == 0
    stubborn = (
        "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
        "    except KeyboardInterrupt:\n        pass"
    )
    result = run_code(live, sb, stubborn, "--context", ctx, "--timeout", "1")
    error = json.loads(result.stdout)["error"]
    assert error["name"] == "TimeoutError" and "kernel was ended" in error["value"]
    # The context works again, on a fresh kernel.
    after = json.loads(run_code(live, sb, "print('state' in globals())", "--context", ctx).stdout)
    assert after["logs"]["stdout"] == ["False\n"]
