"""A live fragment re-fetches itself with `hx-sync="this:replace"` (docs/pagination.md:
pushed, not polled), and htmx inherits `hx-sync`: an action inside that fragment without
its own `hx-sync` would share the fragment's request slot, so the next pushed re-fetch
aborts the action's POST in the browser (a Revoke click lost while a grant's counters
tick). Every action inside a live fragment must sync on itself."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from tests.live import ROOT

ACTIONS = ("hx-post", "hx-put", "hx-patch", "hx-delete")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, its hx-sync)
        self.found: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = dict(attrs)
        own = given.get("hx-sync")
        if own is None and any(a in given for a in ACTIONS):
            inherited = next((sync for _, sync in reversed(self.stack) if sync), None)
            if inherited is not None and inherited.replace(" ", "").endswith(":replace"):
                self.found.append((self.getpos()[0], tag))
        if tag not in VOID:
            self.stack.append((tag, own))

    def handle_endtag(self, tag: str) -> None:
        # Template conditionals can leave tags unbalanced: pop to the matching one.
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


def _unsynced_actions(text: str) -> list[tuple[int, str]]:
    scanner = _Scanner()
    scanner.feed(text)
    return scanner.found


def test_the_check_finds_an_action_that_inherits_a_live_fragments_sync():
    live = '<section hx-get="/t" hx-sync="this:replace"><a hx-post="/revoke">Revoke</a></section>'
    assert _unsynced_actions(live) == [(1, "a")]
    fixed = live.replace('hx-post="/revoke"', 'hx-post="/revoke" hx-sync="this:drop"')
    assert _unsynced_actions(fixed) == []


def test_every_action_inside_a_live_fragment_syncs_on_itself():
    offenders = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        for line, tag in _unsynced_actions(path.read_text()):
            offenders.append(f"{Path(path).relative_to(ROOT)}:{line} <{tag}>")
    assert offenders == [], 'add hx-sync="this:drop" to: ' + ", ".join(offenders)
