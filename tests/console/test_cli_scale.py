"""Every row of a seeded project is reachable by paging, through the live server: each /v1
list by its cursor, the real 0.1.9 CLI (which pages sandboxes itself and reads the
other lists whole), and each console list page by its "Older" links.

The seed is `manage.py seed_scale --scale 0.05`: 500 sandboxes, 2,500 lifecycle events,
50 snapshots, 500 grants (100 on one sandbox), 50 keys, 5,000 audit rows.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.live import remove_tree, start_live_server

pytestmark = pytest.mark.cli

SCALE = 0.05
MAX_PAGES = 2000  # a walk that does not end is a failure, not a hang


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("scale"), seed_scale=SCALE, worker=False)
    server.api_key = server.seed["api_key"]  # the CLI acts on the seeded project
    yield server
    server.stop()
    remove_tree(server.data_dir)


@pytest.fixture(scope="module")
def api(seeded):
    with httpx.Client(
        base_url=seeded.url, headers={"Authorization": f"Bearer {seeded.api_key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def console(seeded):
    client = seeded.signed_in(seeded.seed["email"], seeded.seed["password"])
    yield client
    client.close()


def api_walk(api: httpx.Client, url: str, *, limit: int, cursor: str = "next_token", **query):
    param = "cursor" if cursor == "next_cursor" else "next_token"
    items, token = [], None
    for _ in range(MAX_PAGES):
        answer = api.get(url, params={**query, "limit": limit, **({param: token} if token else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        page = body.get("items", body.get("events"))
        assert len(page) <= limit
        items += page
        token = body.get(cursor)
        if not token:
            return items
    raise AssertionError(f"{url} did not end")


def console_walk(console: httpx.Client, url: str, pattern: str) -> list[str]:
    found, path, next_url = [], url.split("?")[0], url
    for _ in range(MAX_PAGES):
        html = console.get(next_url).text
        found += re.findall(pattern, html)
        older = re.search(r'rel="next" href="(\?[^"]+)"', html)
        if not older:
            return found
        next_url = path + older[1].replace("&amp;", "&")  # the link keeps the filters
    raise AssertionError(f"{url} did not end")


def test_every_v1_list_pages_to_its_last_row(seeded, api):
    counts, big = seeded.seed["counts"], seeded.seed["big_sandbox"]
    states = "creating,running,paused,destroyed,error"
    sandboxes = api_walk(api, "/v1/sandboxes", limit=37, state=states)
    assert len(sandboxes) == len({s["id"] for s in sandboxes}) == counts["sandboxes"]
    snapshots = api_walk(api, "/v1/snapshots", limit=7)
    assert len({s["id"] for s in snapshots}) == counts["snapshots"]
    events = api_walk(api, "/v1/lifecycle/events", limit=500, cursor="next_cursor")
    assert len({e["id"] for e in events}) == counts["events"]
    keys = api_walk(api, "/v1/keys", limit=9)
    assert len({k["id"] for k in keys}) == counts["api_keys"] + 1  # + the seed's own key
    grants = api_walk(api, f"/v1/sandboxes/{big}/preview-urls", limit=30)
    assert len({g["id"] for g in grants}) == len(grants) >= counts["grants"] // 5


def test_the_real_cli_sees_every_row(seeded, api):
    counts, big = seeded.seed["counts"], seeded.seed["big_sandbox"]
    # The SDK follows next_token itself, page after page.
    listed = seeded.cli("sandbox", "list", "--state", "destroyed", "--limit", "50", "--json")
    destroyed = json.loads(listed.stdout)
    assert len(destroyed) == counts["sandboxes"] - counts["running"]
    # Bare-list routes answer whole lists to a caller that does not page.
    snapshots = json.loads(seeded.cli("snapshot", "list", check=True).stdout)
    assert len(snapshots) == counts["snapshots"]
    grants = json.loads(
        seeded.cli("sandbox", "preview-url", "list", big, "--json", check=True).stdout
    )["items"]
    paged = api_walk(api, f"/v1/sandboxes/{big}/preview-urls", limit=100)
    assert {g["id"] for g in grants} == {g["id"] for g in paged}
    # Deep offsets are refused with the way forward, never answered by a long skip.
    deep = seeded.cli("lifecycle", "events", "--offset", "20000")
    assert deep.returncode != 0 and "cursor" in (deep.stdout + deep.stderr)


def test_every_console_list_pages_to_its_last_row(seeded, console, api):
    seed, counts = seeded.seed, seeded.seed["counts"]
    team, p, big = seed["team"], f"/t/{seed['team']}/p/{seed['project']}", seed["big_sandbox"]
    audit = console_walk(console, f"/t/{team}/audit/", r"<code>(sb_\d{12})</code>")
    assert len(audit) == len(set(audit)) == counts["audit"]
    sandboxes = console_walk(console, f"{p}/sandboxes/?state=all", r"<code>(sb_\w+)</code></a>")
    assert len(sandboxes) == len(set(sandboxes)) == counts["sandboxes"]
    keys = console_walk(console, f"{p}/keys/", r"<code>(nsk_[\w-]+)…</code>")
    assert len(set(keys)) == counts["api_keys"] + 1
    grants = console_walk(console, f"{p}/sandboxes/{big}/previews/", r'<tr id="grant-(\w+)"')
    paged = api_walk(api, f"/v1/sandboxes/{big}/preview-urls", limit=100)
    assert set(grants) == {g["id"] for g in paged} and len(grants) == len(paged)
    members = console_walk(console, f"/t/{team}/members/", r'<span class="strong">([^<]+)</span>')
    assert len(members) == counts["members"]
    # An audit filter keeps to its rows across pages: every row shown has that action.
    rotations = console_walk(
        console, f"/t/{team}/audit/?action=apikey.rotate", r'<code class="action">([^<]+)</code>'
    )
    assert rotations and set(rotations) == {"apikey.rotate"}
