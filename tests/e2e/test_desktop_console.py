"""A desktop sandbox's console page in a real browser (Debian chromium via Playwright)
against a live server: the live screen (noVNC through the preview gateway) shows and takes
typing, the Screenshot button downloads a PNG of the screen, and a recording started and
stopped from the page downloads as an MP4. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import time

import pytest

from tests.console.test_cli_desktop import EDITOR, png_info
from tests.e2e.conftest import add_user, needs_chromium, sign_in
from tests.e2e.conftest import shot as _shot

pytestmark = [pytest.mark.e2e, needs_chromium]


def shot(page, name: str) -> None:
    _shot(page, f"desktop-{name}")


def screen(live, sandbox_id: str, tmp_path, name: str) -> bytes:
    target = tmp_path / f"{name}.png"
    live.cli("sandbox", "desktop", "screenshot", sandbox_id, "-o", str(target), check=True)
    return png_info(target.read_bytes())[2]


def test_desktop_page_shows_the_live_screen(live, page, tmp_path):
    sign_in(page, live, add_user(live, "dana"))
    made = live.cli(
        "sandbox", "create", "--template", "desktop", "--resolution", "1024x640",
        "--timeout", "900", check=True, timeout=1800,
    )  # fmt: skip
    sandbox_id = json.loads(made.stdout)["id"]
    live.cli(
        "sandbox", "exec", sandbox_id, "--shell", f"printf '%s' '{EDITOR}' > /workspace/ed.tcl",
        check=True,
    )  # fmt: skip
    live.cli(
        "sandbox",
        "desktop",
        "launch",
        "executable",
        sandbox_id,
        "wish",
        "/workspace/ed.tcl",
        check=True,
    )

    page.goto(f"{live.url}/t/dana/p/main/sandboxes/{sandbox_id}/")
    frame_element = page.wait_for_selector("#desktop-frame", timeout=60_000)
    frame = frame_element.content_frame()
    frame.wait_for_selector("body[data-state=connected]", timeout=60_000)
    frame.wait_for_selector("#desktop-screen canvas")
    time.sleep(1)  # the first frame of the screen
    shot(page, "01-live-screen")

    # Typing into the framed screen reaches the editor in the sandbox.
    before = screen(live, sandbox_id, tmp_path, "before")
    box = frame_element.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.keyboard.type("typed in the browser")
    deadline = time.monotonic() + 30
    while screen(live, sandbox_id, tmp_path, "after") == before:
        assert time.monotonic() < deadline, "typing in the page never reached the screen"
        time.sleep(0.5)
    shot(page, "02-typed")

    # The Screenshot button downloads a PNG of the screen's size.
    with page.expect_download() as download:
        page.click("#desktop-screenshot")
    png = tmp_path / "console.png"
    download.value.save_as(png)
    assert png_info(png.read_bytes())[:2] == (1024, 640)

    # Record from the page, stop, download the MP4.
    page.click("#desktop-record")
    page.wait_for_selector("#desktop-record-stop", timeout=30_000)
    live.cli("sandbox", "desktop", "type", sandbox_id, " while recording", check=True)
    time.sleep(1.5)
    page.click("#desktop-record-stop")
    link = page.wait_for_selector("#desktop-recordings a:has-text('Download')", timeout=30_000)
    shot(page, "03-recorded")
    with page.expect_download() as download:
        link.click()
    video = tmp_path / "console.mp4"
    download.value.save_as(video)
    data = video.read_bytes()
    assert data[4:8] == b"ftyp" and b"moov" in data and len(data) > 1000
