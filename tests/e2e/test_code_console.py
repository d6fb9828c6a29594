"""The sandbox page's code cell in a real browser (Debian chromium via Playwright) against a
live server: state kept between runs, output streamed while the code still runs, a pandas
table drawn as a table, and a matplotlib figure as an image."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import add_user, needs_chromium, shot, sign_in

pytestmark = [pytest.mark.e2e, needs_chromium]


def test_code_cell_runs_and_shows_rich_output(live, page):
    sign_in(page, live, add_user(live, "cody"))
    created = live.cli(
        "sandbox", "create", "--template", "code-interpreter", "--timeout", "900", check=True
    )
    sandbox_id = json.loads(created.stdout)["id"]
    page.goto(f"{live.url}/t/cody/p/main/sandboxes/{sandbox_id}/")
    page.wait_for_selector("#code-form")

    page.fill("#code-source", "x = 20\nprint('set', x)")
    page.click("#code-run")
    page.wait_for_selector("#code-status:has-text('Done')", timeout=90_000)
    assert page.inner_text("#code-output .code-stdout") == "set 20\n"
    assert page.url.endswith(f"/sandboxes/{sandbox_id}/")  # streamed, not a form POST

    # The same kernel: x is still there. The first line shows while the code waits for
    # a file that only this test writes.
    page.fill(
        "#code-source",
        "import os, time\nprint('waiting', flush=True)\n"
        "while not os.path.exists('/tmp/go'):\n    time.sleep(0.05)\nx * 2",
    )
    page.click("#code-run")
    page.wait_for_selector("#code-output .code-stdout:has-text('waiting')", timeout=30_000)
    assert page.locator("#code-output .code-result").count() == 0
    live.cli("sandbox", "exec", sandbox_id, "--shell", "touch /tmp/go", check=True)
    page.wait_for_selector("#code-output .code-result:has-text('40')", timeout=30_000)

    # A DataFrame is drawn as a table (its HTML rebuilt as plain table cells).
    page.fill(
        "#code-source",
        "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})",
    )
    page.click("#code-run")
    page.wait_for_selector("#code-output .code-html table td:has-text('Lima')", timeout=60_000)
    assert (
        page.locator("#code-output .code-html style, #code-output .code-html [class]").count() == 0
    )

    # A figure is an image; it is also kept as an artifact.
    page.fill("#code-source", "import matplotlib.pyplot as plt\nplt.plot([1, 4, 2])\nplt.show()")
    page.click("#code-run")
    page.wait_for_selector("#code-output img.code-image", timeout=60_000)
    page.wait_for_selector("#code-output .code-artifact:has-text('image/png')", timeout=30_000)
    width = page.eval_on_selector("#code-output img.code-image", "img => img.naturalWidth")
    assert width > 100
    shot(page, "code-cell")

    # Stop leaves the stream; the server interrupts the kernel, whose state stays.
    page.fill("#code-source", "import time\nwhile True:\n    time.sleep(0.05)")
    page.click("#code-run")
    page.wait_for_selector("#code-status:has-text('Running')", timeout=30_000)
    page.click("#code-stop")
    page.wait_for_selector("#code-status:has-text('Stopped')", timeout=10_000)
    page.fill("#code-source", "print('after stop', x)")
    page.click("#code-run")
    page.wait_for_selector("#code-output .code-stdout:has-text('after stop 20')", timeout=60_000)

    # An error shows its traceback, and the cell can run again.
    page.fill("#code-source", "undefined_name")
    page.click("#code-run")
    page.wait_for_selector("#code-output .code-stderr:has-text('NameError')", timeout=30_000)
