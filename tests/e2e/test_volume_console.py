"""The volume pages in a real browser (Debian chromium via Playwright) against a live server:
create a volume, upload a file and watch the progress bar reach 100 %, make a folder,
rename, download a folder as a tar, delete after confirming, and see a sandbox made with
the real CLI in "Mounted by". Screenshots go to test-artifacts/."""

from __future__ import annotations

import io
import os
import re
import tarfile

import pytest

from tests.e2e.conftest import add_user, needs_chromium, sign_in
from tests.e2e.conftest import shot as _shot

pytestmark = [pytest.mark.e2e, needs_chromium]


def shot(page, name: str) -> None:
    _shot(page, f"volume-{name}")


def test_volume_console(live, page, tmp_path):
    sign_in(page, live, add_user(live, "vera"))
    page.goto(live.url + "/t/vera/p/main/volumes/")
    page.wait_for_selector("text=No volumes yet")
    page.fill("#volume-create input[name=name]", "team-data")
    page.click("#volume-create button")
    page.wait_for_url(re.compile(r"/volumes/vol_\w+/$"))
    volume_id = page.url.rstrip("/").rsplit("/", 1)[1]
    shot(page, "01-empty")

    # Upload (XHR with a progress bar), then the browser shows the file.
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(3 * 1024 * 1024))
    page.set_input_files("#volume-upload input[type=file]", str(blob))
    page.evaluate(
        """() => {
          window.progressSeen = [];
          const bar = document.querySelector('#volume-upload progress');
          new MutationObserver(() => window.progressSeen.push(bar.value))
            .observe(bar, {attributes: true, attributeFilter: ['value']});
        }"""
    )
    page.click("#volume-upload button")
    page.wait_for_selector("#volume-files td:has-text('weights.bin')")
    assert max(page.evaluate("window.progressSeen")) == 100  # the bar moved to the end
    page.wait_for_selector("#volume-used:has-text('3.0 MB of')")  # the usage card follows
    shot(page, "02-uploaded")
    assert live.cli("volume", "stat", "team-data", "/weights.bin", check=True).stdout.count(
        str(3 * 1024 * 1024)
    )

    # A folder, a move into it by rename... and a download of the folder as a tar.
    page.fill("#volume-files input[name=name][required]:not([value])", "models")
    page.click("text=Create folder")
    page.wait_for_selector("#volume-files a.is-dir:has-text('models/')")
    live.cli("volume", "mv", "team-data", "/weights.bin", "/models/weights.bin", check=True)
    page.click("#volume-files a.is-dir:has-text('models/')")
    page.wait_for_selector("#volume-files td:has-text('weights.bin')")
    page.click("#volume-files summary:has-text('Rename')")
    page.fill("#volume-files details[open] input[name=name]", "model.bin")
    page.click("#volume-files details[open] button")
    page.wait_for_selector("#volume-files td:has-text('model.bin')")
    with page.expect_download() as download:
        page.click("text=Download this folder as .tar")
    data = open(download.value.path(), "rb").read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["model.bin"]
    shot(page, "03-folder")

    # A sandbox mounts it (real CLI); the page says who does.
    sandbox_id = live.new_sandbox("--volume", "ref=team-data,mount=/data,ro=true")
    page.goto(f"{live.url}/t/vera/p/main/volumes/{volume_id}/")
    page.wait_for_selector(f"#volume-mounts:has-text('{sandbox_id}')")
    assert "read-only" in page.inner_text("#volume-mounts")
    page.goto(f"{live.url}/t/vera/p/main/volumes/")
    page.wait_for_selector(f"#volume-table:has-text('{sandbox_id}')")
    shot(page, "04-list")

    # Delete a file after confirming (the page's dialog handler accepts hx-confirm).
    page.goto(f"{live.url}/t/vera/p/main/volumes/{volume_id}/?path=/models")
    page.click("#volume-files a:has-text('Delete')")
    page.wait_for_selector("#volume-files td:has-text('This folder is empty.')")
    assert live.cli("volume", "exists", "team-data", "/models/model.bin").returncode == 1
    live.cli("sandbox", "kill", sandbox_id, check=True)
