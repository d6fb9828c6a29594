"""Every console list page and /v1 list route against a busy project (issue 15).

Starts the default server (`manage.py serve`, without the worker: the seeded sandboxes
are rows only) on a fresh database filled by `manage.py seed_scale`, signs in to the
console through its form, then for each page or route: a warm-up, then N sequential
requests over one keep-alive connection, timed from send to last body byte. Prints a
markdown table (p50, p95, max, response size, rows on the page) and writes it to
bench/results/list_latest.md.

Run on PostgreSQL, as the issue asks:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<yours> \\
        .venv/bin/python bench/list_bench.py [--requests 30] [--warmup 5] [--scale 1]

Only loopback traffic; the server is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live import LiveServer, start_live_server  # noqa: E402

GOAL_P95_MS = 50.0


@dataclass
class Row:
    kind: str  # "console" or "/v1"
    name: str
    url: str
    p50: float
    p95: float
    worst: float
    size: int
    items: int


def measure(
    client: httpx.Client, url: str, *, warmup: int, requests: int, headers: dict
) -> tuple[list, int]:
    for _ in range(warmup):
        client.get(url, headers=headers).raise_for_status()
    times, size = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        body = answer.content
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{url} answered {answer.status_code}: {body[:300]!r}")
        size = len(body)
    return times, size


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def count_items(kind: str, body: bytes, answer_json) -> int:
    if kind == "/v1":
        data = answer_json()
        if isinstance(data, list):
            return len(data)
        for key in ("items", "events"):
            if key in data:
                return len(data[key])
        return 0
    return len(re.findall(rb"<tr[ >]", body)) + len(re.findall(rb'<li class="event', body))


def next_cursor(client: httpx.Client, url: str, key: str) -> str:
    """The cursor to the second page of a /v1 list."""
    return client.get(url).json()[key]


def console_cursor(client: httpx.Client, url: str) -> str:
    found = re.search(r'rel="next" href="\?(?:[^"]*&amp;)?after=([\w-]+)"', client.get(url).text)
    if not found:
        raise SystemExit(f"no next page on {url}")
    return found[1]


def routes(server: LiveServer, console: httpx.Client, api: httpx.Client) -> list[tuple]:
    seed = server.seed
    team, project, big = seed["team"], seed["project"], seed["big_sandbox"]
    p = f"/t/{team}/p/{project}"
    audit_two = console_cursor(console, f"/t/{team}/audit/")
    sandboxes_two = console_cursor(console, f"{p}/sandboxes/?state=all")
    grants_two = console_cursor(console, f"{p}/previews/")
    keys_two = console_cursor(console, f"{p}/keys/")
    snap = next_cursor(api, "/v1/snapshots?limit=100", "next_token")
    events = next_cursor(api, "/v1/lifecycle/events?limit=50", "next_cursor")
    destroyed = next_cursor(api, "/v1/sandboxes?state=destroyed&limit=100", "next_token")
    grants = next_cursor(api, f"/v1/sandboxes/{big}/preview-urls?limit=100", "next_token")
    keys = next_cursor(api, "/v1/keys?limit=100", "next_token")
    return [
        # The floor in this run: one DB round trip, and one row through /v1's auth.
        ("/v1", "baseline: /healthz", "/healthz"),
        ("/v1", "baseline: GET /v1/sandboxes/{id}", f"/v1/sandboxes/{big}"),
        ("console", "project overview", f"{p}/"),
        ("console", "team (projects)", f"/t/{team}/"),
        ("console", "sandboxes (live)", f"{p}/sandboxes/"),
        ("console", "sandboxes, all states", f"{p}/sandboxes/?state=all"),
        ("console", "sandboxes, all, page 2", f"{p}/sandboxes/?state=all&after={sandboxes_two}"),
        ("console", "sandboxes, metadata filter", f'{p}/sandboxes/?state=all&metadata={{"team":"ml"}}'),
        ("console", "sandbox page (busiest)", f"{p}/sandboxes/{big}/"),
        ("console", "sandbox state fragment", f"{p}/sandboxes/{big}/state/"),
        ("console", "API keys", f"{p}/keys/"),
        ("console", "API keys, page 2", f"{p}/keys/?after={keys_two}"),
        ("console", "members", f"/t/{team}/members/"),
        ("console", "audit log", f"/t/{team}/audit/"),
        ("console", "audit log, page 2", f"/t/{team}/audit/?after={audit_two}"),
        ("console", "audit, by action", f"/t/{team}/audit/?action=apikey.rotate"),
        ("console", "audit, actor prefix", f"/t/{team}/audit/?actor=member1"),
        ("console", "audit, date range", f"/t/{team}/audit/?since=2020-01-01&until=2999-01-01"),
        ("console", "preview links (project)", f"{p}/previews/"),
        ("console", "preview links, page 2", f"{p}/previews/?after={grants_two}"),
        ("console", "preview links (busiest sandbox)", f"{p}/sandboxes/{big}/previews/"),
        ("console", "preview table fragment", f"{p}/previews/table/"),
        ("/v1", "sandboxes (live)", "/v1/sandboxes"),
        ("/v1", "sandboxes destroyed, limit 100", "/v1/sandboxes?state=destroyed&limit=100"),
        ("/v1", "sandboxes destroyed, page 2", f"/v1/sandboxes?state=destroyed&limit=100&next_token={destroyed}"),
        ("/v1", "snapshots, limit 100", "/v1/snapshots?limit=100"),
        ("/v1", "snapshots, page 2", f"/v1/snapshots?limit=100&next_token={snap}"),
        ("/v1", "snapshots of one sandbox", f"/v1/sandboxes/{big}/snapshots?limit=100"),
        ("/v1", "lifecycle events", "/v1/lifecycle/events"),
        ("/v1", "lifecycle events, cursor page 2", f"/v1/lifecycle/events?cursor={events}"),
        ("/v1", "lifecycle events, offset 10,000", "/v1/lifecycle/events?offset=10000"),
        ("/v1", "lifecycle of one sandbox", f"/v1/sandboxes/{big}/lifecycle"),
        ("/v1", "keys, limit 100", "/v1/keys?limit=100"),
        ("/v1", "keys, page 2", f"/v1/keys?limit=100&next_token={keys}"),
        ("/v1", "preview-urls (2,000), limit 100", f"/v1/sandboxes/{big}/preview-urls?limit=100"),
        ("/v1", "preview-urls, page 2", f"/v1/sandboxes/{big}/preview-urls?limit=100&next_token={grants}"),
        ("/v1", "snapshots, unpaged (0.1.9 CLI: all 1,000)", "/v1/snapshots"),
        ("/v1", "keys, unpaged (0.1.9 CLI: all 1,001)", "/v1/keys"),
        ("/v1", "preview-urls, unpaged (0.1.9 CLI: all 2,000)", f"/v1/sandboxes/{big}/preview-urls"),
    ]  # fmt: skip


def table(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| | page or route | p50 ms | p95 ms | max ms | p50 over floor | bytes | rows | p95 < 50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    # The floor of each kind in this run: the cheapest page of the console (the project
    # overview, no list) and a one-row /v1 read. What a list adds is its p50 above that.
    floor = {
        "console": next(r.p50 for r in rows if r.name == "project overview"),
        "/v1": next(r.p50 for r in rows if r.name.startswith("baseline: GET")),
    }
    for r in rows:
        ok = "yes" if r.p95 < GOAL_P95_MS else "**no**"
        if "unpaged" in r.name:
            ok += " (whole list, informational)" if ok == "yes" else " (whole list, see note)"
        lines.append(
            f"| {r.kind} | {r.name} | {r.p50:.1f} | {r.p95:.1f} | {r.worst:.1f} | "
            f"{r.p50 - floor[r.kind]:+.1f} | {r.size:,} | {r.items} | {ok} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if not 1 <= args.requests <= 1000 or not 0 <= args.warmup <= 100:
        raise SystemExit("--requests 1..1000, --warmup 0..100")
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        print("warning: DATABASE_URL is not PostgreSQL; the issue's figures are for PostgreSQL")
    with tempfile.TemporaryDirectory(prefix="list-bench-") as tmp:
        seeded = time.perf_counter()
        server = start_live_server(
            Path(tmp), seed_scale=args.scale, worker=False, API_RATE_LIMIT_PER_MINUTE="1000000"
        )
        seeded = time.perf_counter() - seeded
        try:
            seed = server.seed
            console = server.signed_in(seed["email"], seed["password"])  # full pages
            api = httpx.Client(
                base_url=server.url,
                timeout=30,
                headers={"Authorization": f"Bearer {seed['api_key']}"},
            )
            rows = []
            for kind, name, url in routes(server, console, api):
                client = console if kind == "console" else api
                # Fragments are what htmx fetches: ask as htmx does.
                headers = {"HX-Request": "true"} if "fragment" in name else {}
                times, size = measure(
                    client, url, warmup=args.warmup, requests=args.requests, headers=headers
                )
                last = client.get(url, headers=headers)
                items = count_items(kind, last.content, last.json)
                rows.append(
                    Row(
                        kind,
                        name,
                        url,
                        statistics.median(times),
                        p95(times),
                        max(times),
                        size,
                        items,
                    )
                )
                print(f"{kind:8} {name:45} p50 {rows[-1].p50:7.1f}  p95 {rows[-1].p95:7.1f} ms")
        finally:
            server.stop()  # also drops the run's database
    load = os.getloadavg()
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `manage.py serve` (uvicorn), "
        f"{'PostgreSQL' if 'postgres' in os.environ.get('DATABASE_URL', '') else 'SQLite'}, "
        f"seed --scale {args.scale} ({seeded:.0f} s to migrate and seed), {args.warmup} warm-up + "
        f"{args.requests} sequential requests each, load average {load[0]:.2f} at the end."
    )
    text = table(rows, header)
    print()
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "list_latest.md").write_text(text)


if __name__ == "__main__":
    main()
