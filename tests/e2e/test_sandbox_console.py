"""The sandbox pages in a real browser (Debian chromium via Playwright) against a live
server: create a sandbox from the form, stream `echo hello` through the exec box, upload
a file and find it in the file browser, and watch the state badge follow a pause made
from outside the page (the real CLI). Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import add_user, needs_chromium, sign_in
from tests.e2e.conftest import shot as _shot

pytestmark = [pytest.mark.e2e, needs_chromium]


def shot(page, name: str) -> None:
    _shot(page, f"sandbox-{name}")


def test_sandbox_console(live, page, tmp_path):
    # A user with a password and a key for the same project, so the CLI can act on the
    # sandbox the browser shows.
    sign_in(page, live, add_user(live, "erin"))
    page.goto(live.url + "/t/erin/p/main/sandboxes/")
    page.wait_for_selector("text=No sandboxes yet")
    shot(page, "01-empty-list")

    # Create from the form (htmx POST, then HX-Redirect to the detail page).
    page.click(".header-actions >> text=New sandbox")
    page.fill("textarea[name=envs]", "GREETING=hello from env")
    page.fill("textarea[name=metadata]", "team=eval")
    page.fill("input[name=timeout]", "900")
    page.select_option("select[name=on_timeout]", "pause")
    shot(page, "02-form")
    page.click("button:has-text('Create sandbox')")
    page.wait_for_url(re.compile(r"/sandboxes/sb_\w+/$"), timeout=30_000)
    sandbox_id = page.url.rstrip("/").rsplit("/", 1)[1]
    page.wait_for_selector("#sandbox-status:has-text('Running')")

    # The exec box streams output over the console WebSocket.
    page.fill("#exec-form input[name=command]", "echo hello; echo $GREETING")
    page.click("#exec-run")
    page.wait_for_selector("#exec-output .term-exit:has-text('[exit 0]')", timeout=15_000)
    output = page.inner_text("#exec-output")
    assert "hello\nhello from env" in output
    assert page.url.endswith(f"/sandboxes/{sandbox_id}/")  # streamed, not a form POST
    # A command that prints over time: the first line shows before the process ends.
    page.fill("#exec-form input[name=command]", "echo tick; sleep 3; echo tock")
    page.click("#exec-run")
    printed = "#exec-output span:not(.term-cmd)"
    page.wait_for_selector(f"{printed}:has-text('tick')", timeout=5_000)
    assert page.locator(f"{printed}:has-text('tock')").count() == 0
    page.wait_for_selector(f"{printed}:has-text('tock')", timeout=10_000)

    # Upload a file and find it in the browser, then view it.
    upload = tmp_path / "notes.txt"
    upload.write_text("uploaded through the console\n")
    page.set_input_files("#upload-file", str(upload))
    page.click(".upload-form button:has-text('Upload')")
    page.wait_for_selector("#file-browser a.file-link:has-text('notes.txt')")
    page.click("#file-browser a.file-link:has-text('notes.txt')")
    page.wait_for_selector("#file-view pre:has-text('uploaded through the console')")
    # Real load for the metrics chart: 80 MiB held and one core busy for a while.
    burn = "python3 -c 'import time\nb = bytearray(80 << 20)\nend = time.time() + 20\nwhile time.time() < end: pass'"
    live.cli("sandbox", "exec", sandbox_id, "--background", "--shell", burn, check=True)
    page.click("#process-table a:has-text('Refresh')")
    page.wait_for_selector("#process-table td:has-text('bytearray')")
    # Polled from Python: wait_for_function evaluates a string, which the console's CSP refuses.
    deadline = time.monotonic() + 15
    while _leading_number(page.inner_text("#metric-mem")) <= 50:
        assert time.monotonic() < deadline, page.inner_text("#metric-mem")
        page.wait_for_timeout(250)
    page.wait_for_timeout(4000)  # a few more samples for the chart
    shot(page, "03-detail-running")

    # Pause from outside the page: the pushed state badge follows within a few seconds.
    live.cli("sandbox", "pause", sandbox_id, check=True)
    page.wait_for_selector("#sandbox-status:has-text('Paused')", timeout=10_000)
    page.wait_for_selector("#event-list:has-text('Hibernate')", timeout=10_000)
    page.wait_for_selector("#resume-button")
    shot(page, "04-paused-live")

    # Resume from the page, then kill (hx-confirm accepted above).
    page.click("#resume-button")
    page.wait_for_selector("#sandbox-status:has-text('Running')", timeout=30_000)
    page.click("#kill-button")
    page.wait_for_selector("#sandbox-status:has-text('Destroyed')", timeout=30_000)
    assert page.locator("#sandbox-state[hx-trigger*='every']").count() == 0  # pushed, not polled
    # The other parts of the page follow the `sandbox-changed` event.
    page.wait_for_selector("#event-list .event-op:text-is('Destroy')")
    page.wait_for_selector("#file-browser:has-text('workspace is gone')")
    page.wait_for_selector("#process-table:has-text('The sandbox is destroyed')")
    assert not page.is_visible("#exec-form")
    shot(page, "05-destroyed")

    page.goto(live.url + "/t/erin/p/main/sandboxes/?state=all&metadata=team%3Deval")
    page.wait_for_selector(f"#sandbox-table >> text={sandbox_id}")
    shot(page, "06-list")


def _leading_number(text: str) -> float:
    """What JavaScript's parseFloat reads at the start of `text` (0 when nothing)."""
    found = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return float(found.group(1)) if found else 0.0
