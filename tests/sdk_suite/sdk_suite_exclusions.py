"""pytest plugin for the SDK's own suite (loaded with `-p sdk_suite_exclusions` by
tests/sdk_suite/run.py):

- the tests listed in exclusions.toml are skipped with their reason; an entry that names
  no collected test fails the run (a stale list would hide a test nobody runs);
- each xdist worker uses its own project's key (SDK_SUITE_WORKER_KEYS), because some
  tests kill every sandbox they can list and would kill a neighbour's;
- `*.localhost` resolves to loopback, as RFC 6761 allows and browsers do (glibc without
  nss-myhostname does not), so preview URLs under preview.localhost open.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest


def _use_worker_key() -> None:
    """Runs at import, before the suite's conftest reads NULLSPACE_API_KEY."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    keys = dict(
        pair.split("=", 1)
        for pair in os.environ.get("SDK_SUITE_WORKER_KEYS", "").split(",")
        if pair
    )
    if worker in keys:
        os.environ["NULLSPACE_API_KEY"] = keys[worker]


_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


_use_worker_key()
socket.getaddrinfo = _getaddrinfo


def load_exclusions(path: Path) -> dict[str, str]:
    """nodeid (or a file path, or `file::Class`) -> reason."""
    data = tomllib.loads(path.read_text())
    reasons: dict[str, str] = data["reasons"]
    excluded: dict[str, str] = {}
    for group in data["exclude"]:
        reason = reasons[group["reason"]]
        for nodeid in group["tests"]:
            if nodeid in excluded:
                raise pytest.UsageError(f"{path.name}: {nodeid} is listed twice")
            excluded[nodeid] = reason
    return excluded


def _matching_entry(nodeid: str, excluded: dict[str, str]) -> str | None:
    """The entry that covers this test: its exact id, its id without parameters, its class
    or its file."""
    candidates = [nodeid, nodeid.split("[", 1)[0]]
    parts = nodeid.split("::")
    candidates += ["::".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
    return next((c for c in candidates if c in excluded), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = Path(os.environ["SDK_SUITE_EXCLUSIONS"])
    excluded = load_exclusions(path)
    used: set[str] = set()
    run_excluded = os.environ.get("SDK_SUITE_RUN_EXCLUDED") == "1"
    for item in items:
        entry = _matching_entry(item.nodeid, excluded)
        if entry is None:
            continue
        used.add(entry)
        if not run_excluded:
            item.add_marker(pytest.mark.skip(reason=f"excluded: {excluded[entry]}"))
    # Only a full collection can tell a stale entry (a -k or a single file selects less).
    if config.getoption("keyword") or config.getoption("markexpr"):
        return
    collected_files = {item.nodeid.split("::", 1)[0] for item in items}
    stale = [e for e in excluded if e not in used and e.split("::", 1)[0] in collected_files]
    if stale:
        raise pytest.UsageError(f"{path.name} names tests that do not exist: {stale}")
