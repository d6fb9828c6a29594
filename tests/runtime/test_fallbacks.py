"""The driver without a network namespace, and without cgroups (signals instead)."""

from __future__ import annotations

import socket
import time

import pytest

from console.runtime.base import CreateSpec
from console.runtime.local import LocalDriver
from tests.runtime.conftest import SUBNET, http_get, marked_pids, start, wait_http


@pytest.fixture
def plain_driver(tmp_path):
    drv = LocalDriver(tmp_path / "rt", SUBNET, netns="off", cgroups=False)
    yield drv
    drv.reconcile(set())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_host_network_and_signal_pause(plain_driver):
    drv = plain_driver
    assert not drv.use_netns and drv.cgroup_base is None
    drv.create(CreateSpec(sandbox_id="sb_plain1"))
    port = _free_port()
    drv.host_path("sb_plain1", "index.html").write_text("plain")
    start(drv, "sb_plain1", f"python3 -m http.server {port} --bind 127.0.0.1")
    assert drv.upstream("sb_plain1", port) == ("127.0.0.1", port)
    assert wait_http("127.0.0.1", port, "/index.html") == b"plain"

    drv.pause("sb_plain1")  # SIGSTOP over the marked processes
    with pytest.raises(OSError):
        http_get("127.0.0.1", port, "/index.html", timeout=1.0)
    drv.resume("sb_plain1")
    assert http_get("127.0.0.1", port, "/index.html", timeout=5.0) == b"plain"


def test_destroy_without_cgroups_finds_daemons(plain_driver):
    drv = plain_driver
    drv.create(CreateSpec(sandbox_id="sb_plain2"))
    start(drv, "sb_plain2", "setsid nohup sleep 300 >/dev/null 2>&1 < /dev/null &")
    start(drv, "sb_plain2", "sleep 300")
    deadline = time.monotonic() + 5
    while len(marked_pids(drv, "sb_plain2")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(marked_pids(drv, "sb_plain2")) >= 2
    drv.pause("sb_plain2")
    drv.destroy("sb_plain2")
    assert marked_pids(drv, "sb_plain2") == []
    assert not (drv.root / "sb_plain2").exists()
