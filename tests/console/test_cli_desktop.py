"""The real `nullspace` 0.1.9 CLI against a live server on a desktop sandbox: every
`sandbox desktop` line with its effect on the real X screen (screenshots decoded and
compared), recordings checked by ffprobe and a full decode, the live stream spoken to as
a VNC client through the preview gateway (view-only refuses input), and another project
answered 404."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.live import VENV_BIN, LiveServer

pytestmark = pytest.mark.cli

WIDTH, HEIGHT = 1280, 720
# A Tk text box (wish comes with x11vnc's tk): what is typed shows on the screen; no
# blinking cursor, so two screenshots of an idle screen are equal.
EDITOR = (
    "wm title . editor\n"
    "wm geometry . 600x300+40+40\n"
    "text .t -font {Helvetica 28} -insertofftime 0 -insertwidth 0\n"
    "pack .t -fill both -expand 1\n"
    "focus -force .t\n"
)


def cli_json(live: LiveServer, *args: str, **kwargs):
    return json.loads(live.cli(*args, check=True, **kwargs).stdout)


def png_info(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, decompressed pixel rows) of a PNG, read by hand (no imaging library)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return size[0], size[1], zlib.decompress(idat)


@pytest.fixture(scope="module")
def desktop(live) -> str:
    info = cli_json(
        live, "sandbox", "create", "--template", "desktop", "--resolution", f"{WIDTH}x{HEIGHT}",
        "--dpi", "144", "--display", ":1", "--timeout", "1200", timeout=1800,
    )  # fmt: skip
    assert info["template"] == "desktop"
    yield info["id"]
    live.cli("sandbox", "kill", info["id"])


def screenshot(live: LiveServer, sandbox_id: str, tmp_path: Path, name: str) -> bytes:
    target = tmp_path / f"{name}.png"
    live.cli("sandbox", "desktop", "screenshot", sandbox_id, "--output", str(target), check=True)
    return target.read_bytes()


def wait_for(condition, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def editor(live, desktop) -> dict:
    """The Tk editor window, open and focused."""
    live.cli(
        "sandbox", "exec", desktop, "--shell", f"printf '%s' '{EDITOR}' > /workspace/editor.tcl",
        check=True,
    )  # fmt: skip
    live.cli(
        "sandbox", "desktop", "launch", "executable", desktop, "wish", "/workspace/editor.tcl",
        check=True,
    )  # fmt: skip

    def window():
        found = cli_json(live, "sandbox", "desktop", "windows", desktop)
        return next((w for w in found if w["title"] == "editor"), None)

    found = wait_for(window, "the editor window")
    live.cli(
        "sandbox",
        "desktop",
        "click",
        desktop,
        str(found["x"] + 100),
        str(found["y"] + 100),
        check=True,
    )
    return found


def test_create_brings_up_the_screen_asked_for(live, desktop):
    assert cli_json(live, "sandbox", "desktop", "screen-size", desktop) == {
        "width": WIDTH,
        "height": HEIGHT,
    }
    display = cli_json(live, "sandbox", "desktop", "display", desktop)
    monitor = display["monitors"][0]
    assert display["virtual_screen"] == {"width": WIDTH, "height": HEIGHT}
    assert (monitor["width_mm"], monitor["height_mm"]) == (226, 127)  # 1280 px at 144 dpi
    # The X server really runs at that size and DPI, and DISPLAY is set for the user's processes.
    out = live.cli(
        "sandbox", "exec", desktop, "--shell", "echo $DISPLAY; xdpyinfo | grep -E 'dimensions|resolution'",
        check=True,
    ).stdout  # fmt: skip
    assert out.startswith(":1\n")
    assert f"{WIDTH}x{HEIGHT} pixels" in out and "144x144 dots per inch" in out
    caps = cli_json(live, "sandbox", "desktop", "capabilities", desktop)
    assert caps["streaming"]["view_only"] is True and caps["recording"]["basic"] is True


def test_screenshot_is_the_screen_and_changes_after_type(live, desktop, editor, tmp_path):
    before = png_info(screenshot(live, desktop, tmp_path, "before"))
    assert before[:2] == (WIDTH, HEIGHT)
    assert png_info(screenshot(live, desktop, tmp_path, "again"))[2] == before[2]  # stable
    live.cli("sandbox", "desktop", "type", desktop, "hello desktop", check=True)
    after = wait_for(
        lambda: (
            (shot := png_info(screenshot(live, desktop, tmp_path, "after")))[2] != before[2]
            and shot
        ),
        "the typed text on the screen",
    )
    assert after[:2] == (WIDTH, HEIGHT)
    # The text reached the window with the focus: select it all (Tk: ctrl+/) and copy it.
    live.cli("sandbox", "desktop", "hotkey", desktop, "ctrl+slash", check=True)
    live.cli("sandbox", "desktop", "press", desktop, "c", "--modifier", "ctrl", check=True)
    copied = wait_for(
        lambda: (
            "hello desktop"
            in live.cli("sandbox", "desktop", "clipboard", "get", desktop, check=True).stdout
        ),
        "the copied text",
        20,
    )
    assert copied


def test_region_and_compressed_screenshots(live, desktop, editor, tmp_path):
    region = tmp_path / "region.png"
    live.cli(
        "sandbox", "desktop", "screenshot-region", desktop, "10", "20", "300", "200",
        "--output", str(region), check=True,
    )  # fmt: skip
    assert png_info(region.read_bytes())[:2] == (300, 200)
    jpeg = tmp_path / "small.jpg"
    live.cli(
        "sandbox", "desktop", "screenshot-compressed", desktop, "--format", "jpeg",
        "--quality", "40", "--scale", "0.5", "--output", str(jpeg), check=True,
    )  # fmt: skip
    data = jpeg.read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    # The frame header (SOF0) carries the scaled size.
    sof = data.index(b"\xff\xc0")
    assert struct.unpack(">HH", data[sof + 5 : sof + 9]) == (HEIGHT // 2, WIDTH // 2)
    webp = tmp_path / "shot.webp"
    live.cli(
        "sandbox", "desktop", "screenshot-compressed", desktop, "--format", "webp",
        "--x", "0", "--y", "0", "--width", "64", "--height", "64", "--output", str(webp),
        check=True,
    )  # fmt: skip
    assert webp.read_bytes()[:4] == b"RIFF" and webp.read_bytes()[8:12] == b"WEBP"
    refused = live.cli(
        "sandbox", "desktop", "screenshot-compressed", desktop, "--format", "bmp", "-o", "/dev/null"
    )  # fmt: skip
    assert refused.returncode != 0 and "format must be one of" in refused.stderr + refused.stdout


def test_mouse_and_windows(live, desktop, editor):
    live.cli("sandbox", "desktop", "move", desktop, "200", "150", check=True)
    assert cli_json(live, "sandbox", "desktop", "cursor", desktop) == {"x": 200, "y": 150}
    live.cli("sandbox", "desktop", "double-click", desktop, "210", "160", check=True)
    live.cli("sandbox", "desktop", "drag", desktop, "100", "100", "300", "120", check=True)
    live.cli(
        "sandbox", "desktop", "scroll", desktop, "200", "150", "down", "--amount", "2", check=True
    )
    live.cli("sandbox", "desktop", "mouse-down", desktop, "--x", "5", "--y", "5", check=True)
    live.cli("sandbox", "desktop", "mouse-up", desktop, check=True)
    assert cli_json(live, "sandbox", "desktop", "cursor", desktop) == {"x": 5, "y": 5}
    windows = cli_json(live, "sandbox", "desktop", "windows", desktop)
    ours = next(w for w in windows if w["title"] == "editor")
    # Tk names the class after the script (and sets no _NET_WM_PID: pid is None).
    assert ours["class_name"] == "Editor.tcl" and ours["width"] == 600
    # A click on the root window (above) leaves no window active; clicking one makes it active.
    live.cli("sandbox", "desktop", "move", desktop, "300", "200", check=True)
    live.cli("sandbox", "desktop", "left-click", desktop, check=True)  # where the cursor is
    current = live.cli("sandbox", "desktop", "current-window", desktop, check=True).stdout.strip()
    title = live.cli("sandbox", "desktop", "window-title", desktop, current, check=True).stdout
    assert title.strip() == "editor" and current == ours["id"]
    outside = live.cli("sandbox", "desktop", "click", desktop, str(WIDTH), "10")
    assert outside.returncode != 0 and "outside the 1280x720 screen" in outside.stderr
    missing = live.cli("sandbox", "desktop", "window-title", desktop, "12345")
    assert missing.returncode != 0 and "Window 12345 does not exist" in missing.stderr


def test_clipboard_set_and_get(live, desktop):
    assert cli_json(live, "sandbox", "desktop", "clipboard", "set", desktop, "from the cli") == {
        "text": "from the cli"
    }
    got = live.cli("sandbox", "desktop", "clipboard", "get", desktop, check=True).stdout
    assert "from the cli" in got


def test_launch_and_open(live, desktop):
    live.cli(
        "sandbox",
        "exec",
        desktop,
        "--shell",
        "echo '<title>local page</title>' > /workspace/p.html",
        check=True,
    )
    live.cli("sandbox", "desktop", "open", desktop, "/workspace/p.html", check=True)

    def browser():
        found = cli_json(live, "sandbox", "desktop", "windows", desktop)
        return next((w for w in found if "local page" in w["title"]), None)

    window = wait_for(browser, "the browser showing the page", 120)
    assert window["class_name"].lower().startswith("firefox")
    # Firefox names its process (_NET_WM_PID): the sandbox's own pid of a firefox process.
    ps = live.cli("sandbox", "exec", desktop, "--shell", f"ps -o comm= -p {window['pid']}")
    assert "firefox" in ps.stdout
    refused = live.cli("sandbox", "desktop", "open", desktop, "javascript:alert(1)")
    assert refused.returncode != 0 and "must be an http(s) or file URL" in refused.stderr
    # The browser's window would cover the editor the next tests type into.
    live.cli("sandbox", "exec", desktop, "--shell", "pkill -f firefox-esr; sleep 1", timeout=60)


def test_recording_downloads_as_a_playable_video(live, desktop, tmp_path):
    started = cli_json(live, "sandbox", "desktop", "recording", "start", desktop, "--name", "demo")
    assert started["status"] == "recording" and started["name"] == "demo"
    for x in range(100, 700, 100):  # something moves while it records
        live.cli("sandbox", "desktop", "type", desktop, f" {x}", check=True)
    time.sleep(1.5)
    stopped = cli_json(live, "sandbox", "desktop", "recording", "stop", desktop, started["id"])
    assert stopped["status"] == "stopped" and stopped["file_size_bytes"] > 0
    assert [
        r["id"] for r in cli_json(live, "sandbox", "desktop", "recording", "list", desktop)
    ] == [started["id"]]
    target = tmp_path / "demo.mp4"
    live.cli(
        "sandbox", "desktop", "recording", "download", desktop, started["id"], "-o", str(target),
        check=True,
    )  # fmt: skip
    data = target.read_bytes()
    assert data[4:8] == b"ftyp" and b"moov" in data and len(data) == stopped["file_size_bytes"]
    # The downloaded bytes, put back into the sandbox: ffprobe reads a video stream and a
    # duration, and a full decode of every frame succeeds.
    live.driver().files(desktop).write("/workspace/back.mp4", [data], limit=10**9)
    probe = live.cli(
        "sandbox", "exec", desktop, "--shell",
        "ffprobe -v error -show_entries stream=codec_name,width,height:format=duration -of json "
        "/workspace/back.mp4 && ffmpeg -v error -i /workspace/back.mp4 -f null - && echo DECODED",
        check=True,
    ).stdout  # fmt: skip
    info = json.loads(probe[: probe.rindex("}") + 1])
    assert info["streams"][0]["codec_name"] == "h264"
    assert (info["streams"][0]["width"], info["streams"][0]["height"]) == (WIDTH, HEIGHT)
    assert float(info["format"]["duration"]) > 1
    assert probe.rstrip().endswith("DECODED")
    live.cli("sandbox", "desktop", "recording", "delete", desktop, started["id"], check=True)
    gone = live.cli("sandbox", "desktop", "recording", "get", desktop, started["id"])
    assert gone.returncode != 0 and f"Recording {started['id']} not found" in gone.stderr


# --- the live stream, as a VNC client through the gateway ---------------------------------


def socket_url(live: LiveServer, viewer_url: str) -> str:
    page = httpx.get(viewer_url, timeout=15)
    assert page.status_code == 200, page.text
    return re.search(r'data-socket="([^"]+)"', page.text)[1].replace("&amp;", "&")


def vnc_type(live: LiveServer, url: str, text: str) -> None:
    """Connect as an RFB 3.8 client (no VNC password: the preview grant is the gate), then
    send key presses for `text` and a click, as a browser's noVNC would."""
    with connect(
        url,
        sock=socket.create_connection(("127.0.0.1", live.port), timeout=15),
        subprotocols=["binary"],
        open_timeout=15,
    ) as ws:
        buffer = b""

        def read(n: int) -> bytes:
            nonlocal buffer
            while len(buffer) < n:
                buffer += ws.recv(timeout=15)
            out, buffer = buffer[:n], buffer[n:]
            return out

        assert read(12).startswith(b"RFB 003.")
        ws.send(b"RFB 003.008\n")
        count = read(1)[0]
        assert 1 in read(count)  # security type None
        ws.send(b"\x01")
        assert read(4) == b"\x00\x00\x00\x00"
        ws.send(b"\x01")  # ClientInit: shared
        width, height = struct.unpack(">HH", read(4))
        assert (width, height) == (WIDTH, HEIGHT)
        read(16)
        (name_length,) = struct.unpack(">I", read(4))
        read(name_length)
        for char in text:
            for down in (1, 0):
                ws.send(struct.pack(">BBHI", 4, down, 0, ord(char)))
        for mask in (1, 0):
            ws.send(struct.pack(">BBHH", 5, mask, 300, 200))
        time.sleep(1)


def test_stream_view_only_refuses_input_and_interactive_takes_it(live, desktop, editor, tmp_path):
    started = cli_json(live, "sandbox", "desktop", "stream", "start", desktop, "--view-only")
    assert started["view_only"] is True and started["auth_key"].startswith("dsk_")
    # No raw VNC port: `stream info` (the raw endpoint) says so, as capabilities do.
    raw = live.cli("sandbox", "desktop", "stream", "info", desktop)
    assert raw.returncode != 0 and "Raw VNC access is disabled" in raw.stderr
    key = live.cli("sandbox", "desktop", "stream", "auth-key", desktop, check=True).stdout.strip()
    assert key == started["auth_key"]
    viewer = live.cli("sandbox", "desktop", "stream", "viewer-url", desktop, check=True).stdout
    assert viewer.strip() == started["viewer_url"]

    live.cli("sandbox", "desktop", "click", desktop, "300", "200", check=True)  # the editor
    time.sleep(1)
    before = png_info(screenshot(live, desktop, tmp_path, "vo-before"))[2]
    view_only_socket = socket_url(live, started["viewer_url"])
    vnc_type(live, view_only_socket, "zzzz")
    time.sleep(1)
    assert png_info(screenshot(live, desktop, tmp_path, "vo-after"))[2] == before

    interactive = cli_json(live, "sandbox", "desktop", "stream", "start", desktop)
    assert interactive["view_only"] is False and interactive["auth_key"] != started["auth_key"]
    # The view-only stream's key and socket died with it.
    replaced = httpx.get(started["viewer_url"], timeout=15)
    assert replaced.status_code == 200 and "Viewer session replaced" in replaced.text
    assert "data-socket" not in replaced.text
    with pytest.raises(InvalidStatus):
        vnc_type(live, view_only_socket, "x")
    vnc_type(live, socket_url(live, interactive["viewer_url"]), "qqqq")
    wait_for(
        lambda: png_info(screenshot(live, desktop, tmp_path, "rw-after"))[2] != before,
        "input through the interactive stream",
    )

    live.cli("sandbox", "desktop", "stream", "stop", desktop, check=True)
    ended = httpx.get(interactive["viewer_url"], timeout=15)
    assert ended.status_code == 200 and "Viewer session ended" in ended.text
    after_stop = live.cli("sandbox", "desktop", "stream", "auth-key", desktop)
    assert after_stop.returncode != 0 and "No desktop stream is running" in after_stop.stderr
    wrong = httpx.get(interactive["viewer_url"].replace("dsk_", "dsk_0"), timeout=15)
    assert wrong.status_code == 404 and wrong.json()["code"] == "viewer_not_found"


def test_another_projects_desktop_is_404(live, desktop):
    other_key = live.manage(
        "bootstrap", "--email", "other@example.com", "--team", "other", "--project", "x"
    )
    env = live.cli_env(NULLSPACE_API_KEY=other_key)
    for args in (
        ("screenshot", desktop, "-o", "/dev/null"),
        ("click", desktop, "10", "10"),
        ("recording", "list", desktop),
        ("stream", "start", desktop),
    ):
        result = subprocess.run(
            [str(VENV_BIN / "nullspace"), "sandbox", "desktop", *args],
            cwd=live.data_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0, args
        assert f"Sandbox {desktop} not found" in result.stderr, (args, result.stderr)
    raw = httpx.post(
        f"{live.url}/v1/sandboxes/{desktop}/desktop/screenshot",
        headers={"Authorization": f"Bearer {other_key}"},
        timeout=30,
    )
    assert raw.status_code == 404


def test_desktop_routes_refuse_other_templates_and_bad_options(live, desktop):
    base = cli_json(live, "sandbox", "create", "--template", "base", "--timeout", "300")["id"]
    try:
        refused = live.cli("sandbox", "desktop", "screenshot", base, "-o", "/dev/null")
        assert refused.returncode != 0 and "is not a desktop sandbox" in refused.stderr
    finally:
        live.cli("sandbox", "kill", base)
    headers = {"Authorization": f"Bearer {live.api_key}"}
    for body in (
        {"template": "base", "desktop": {"dpi": 96}},
        {"template": "desktop", "desktop": {"resolution": {"width": 10, "height": 10}}},
        {"template": "desktop", "desktop": {"display": "1"}},
        {"template": "desktop", "desktop": {"depth": 24}},
    ):
        made = httpx.post(f"{live.url}/v1/sandboxes", json=body, headers=headers, timeout=60)
        assert made.status_code == 400, (body, made.text)
    for route, body in (
        ("click", {"x": 1, "y": 1, "button": "fourth"}),
        ("key", {"key": "--help"}),
        ("scroll", {"x": 1, "y": 1, "direction": "sideways"}),
        ("screenshot/region", {"x": 0, "y": 0, "width": WIDTH + 1, "height": 10}),
        ("stream/start", {"view_only": "yes"}),
    ):
        answer = httpx.post(
            f"{live.url}/v1/sandboxes/{desktop}/desktop/{route}",
            json=body,
            headers=headers,
            timeout=60,
        )
        assert answer.status_code == 400, (route, answer.text)
        assert answer.json()["code"] == "invalid_request"


def test_a_fork_gets_the_same_screen_back(live, desktop, tmp_path):
    fork = cli_json(live, "sandbox", "fork", desktop, timeout=600)["id"]
    try:
        # The desktop processes do not come along with a fork: the first call starts them,
        # at the screen of the sandbox it came from; two first calls at once start one.
        with ThreadPoolExecutor(2) as pool:
            shots = list(
                pool.map(lambda n: screenshot(live, fork, tmp_path, f"fork-{n}"), range(2))
            )
        assert [png_info(shot)[:2] for shot in shots] == [(WIDTH, HEIGHT)] * 2
        processes = httpx.get(
            f"{live.url}/v1/sandboxes/{fork}/processes",
            headers={"Authorization": f"Bearer {live.api_key}"},
            timeout=30,
        ).json()
        started = [p for p in processes if p["command"].startswith(("Xvfb", "openbox"))]
        assert len(started) == 2 and all(p["running"] for p in started), started
        assert (
            cli_json(live, "sandbox", "desktop", "display", fork)["monitors"][0]["width_mm"] == 226
        )
    finally:
        live.cli("sandbox", "kill", fork)
