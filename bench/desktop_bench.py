"""Desktop sandbox create-to-first-screenshot time, against a live server.

Starts the real server (manage.py serve) on a free loopback port with its own data
directory, then N times (default 5):
  - POST /v1/sandboxes {template: desktop, desktop: {resolution: 1280x720}} until the 201
    (the X server and window manager answer before create does),
  - POST /v1/sandboxes/{id}/desktop/screenshot until the PNG arrives,
  - DELETE the sandbox;
and on one sandbox, 20 more screenshots (full PNG) and 20 clicks (round trips).
Prints median, p90 and max in ms. The desktop image must be built first
(`manage.py runtime_image desktop`), or the first create builds it.

    .venv/bin/python bench/desktop_bench.py [-n 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from tests.live import remove_tree, start_live_server  # noqa: E402

BODY = {"template": "desktop", "desktop": {"resolution": {"width": 1280, "height": 720}}}


def ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    median = statistics.median(samples)
    return (
        f"| {name:<34} | {len(samples):>3} | {median:>9.1f} | {p90:>8.1f} | {max(samples):>8.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5, help="creates to time (1-20)")
    args = parser.parse_args()
    count = max(1, min(20, args.n))
    tmp = Path(tempfile.mkdtemp(prefix="desktop-bench-"))
    server = start_live_server(tmp)
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=600
    )
    create, first_shot, total = [], [], []
    shots, clicks = [], []
    try:
        for index in range(count):
            began = time.perf_counter()
            made = client.post("/v1/sandboxes", json=BODY)
            made.raise_for_status()
            create.append(ms(began))
            sandbox_id = made.json()["id"]
            shot_began = time.perf_counter()
            shot = client.post(f"/v1/sandboxes/{sandbox_id}/desktop/screenshot")
            shot.raise_for_status()
            assert shot.content[:4] == b"\x89PNG"
            first_shot.append(ms(shot_began))
            total.append(ms(began))
            if index == count - 1:
                for _ in range(20):
                    began = time.perf_counter()
                    client.post(f"/v1/sandboxes/{sandbox_id}/desktop/screenshot").raise_for_status()
                    shots.append(ms(began))
                for i in range(20):
                    began = time.perf_counter()
                    client.post(
                        f"/v1/sandboxes/{sandbox_id}/desktop/click", json={"x": 10 + i, "y": 10}
                    ).raise_for_status()
                    clicks.append(ms(began))
            client.delete(f"/v1/sandboxes/{sandbox_id}")
    finally:
        client.close()
        server.stop()
        remove_tree(tmp)
    print(f"| {'desktop (1280x720), ms':<34} |   n |    median |      p90 |      max |")
    print(f"|{'-' * 36}|-----|-----------|----------|----------|")
    print(row("create (X + window manager up)", create))
    print(row("first screenshot after create", first_shot))
    print(row("create to first screenshot", total))
    print(row("screenshot (warm, PNG)", shots))
    print(row("click (warm)", clicks))


if __name__ == "__main__":
    main()
