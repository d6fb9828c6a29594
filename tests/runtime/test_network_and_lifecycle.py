"""Ports, pause/resume and destroy, with real processes and real network namespaces."""

from __future__ import annotations

import time

import pytest

from console.runtime import netns as net
from console.runtime.base import SandboxMissing
from tests.runtime.conftest import (
    get,
    http_get,
    kernel_traces,
    marked_pids,
    put,
    start,
    wait_http,
)

needs_netns = pytest.mark.skipif(not net.available(), reason="needs root and iproute2")

SERVER = "python3 -m http.server 8080 --bind 0.0.0.0"


def _alive(pid: int) -> bool:
    """Running or stopped; a zombie waiting for init to reap it has ended."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@needs_netns
def test_two_sandboxes_serve_on_the_same_port_at_once(driver, make_sandbox):
    first, second = make_sandbox(), make_sandbox()
    for sandbox_id in (first, second):
        put(driver, sandbox_id, "index.html", f"hello from {sandbox_id}")
        start(driver, sandbox_id, SERVER)
    one, two = driver.upstream(first, 8080), driver.upstream(second, 8080)
    assert one != two and one[1] == two[1] == 8080
    assert not one[0].startswith("127.")
    assert wait_http(*one, "/index.html") == f"hello from {first}".encode()
    assert wait_http(*two, "/index.html") == f"hello from {second}".encode()
    # Both servers still run: neither lost the port to the other.
    assert all(p.running for p in driver.processes(first) + driver.processes(second))


@needs_netns
def test_sandbox_cannot_reach_other_networks(driver, make_sandbox):
    sandbox_id = make_sandbox()
    script = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(1)\n"
        "try:\n    s.connect(('192.0.2.1', 80)); print('connected')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )
    put(driver, sandbox_id, "probe.py", script)
    pid = start(driver, sandbox_id, "python3 probe.py")
    assert driver.wait_process(sandbox_id, pid, 10) == 0
    # No default route in the namespace: unreachable at once, nothing leaves the host.
    assert driver.process_logs(sandbox_id, pid).stdout.startswith("refused")


@needs_netns
def test_pause_stops_the_server_and_resume_brings_it_back(driver, make_sandbox):
    sandbox_id = make_sandbox()
    put(driver, sandbox_id, "index.html", "alive")
    start(driver, sandbox_id, SERVER)
    where = driver.upstream(sandbox_id, 8080)
    assert wait_http(*where, "/index.html") == b"alive"

    driver.pause(sandbox_id)
    assert driver.is_paused(sandbox_id)
    with pytest.raises(OSError):  # TimeoutError: connect or read never completes
        http_get(*where, "/index.html", timeout=1.0)

    driver.resume(sandbox_id)
    assert not driver.is_paused(sandbox_id)
    assert http_get(*where, "/index.html", timeout=5.0) == b"alive"


def test_pause_stops_cpu_work(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = start(
        driver, sandbox_id, "i=0; while true; do i=$((i+1)); echo $i > count; sleep 0.01; done"
    )
    deadline = time.monotonic() + 5
    while not driver.files(sandbox_id).exists("/workspace/count") and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.pause(sandbox_id)
    time.sleep(0.1)
    frozen = get(driver, sandbox_id, "count")
    time.sleep(0.4)
    assert get(driver, sandbox_id, "count") == frozen
    driver.resume(sandbox_id)
    time.sleep(0.4)
    assert get(driver, sandbox_id, "count") != frozen
    driver.kill_process(sandbox_id, pid)


def test_destroy_ends_every_process_and_leaves_nothing(driver, make_sandbox):
    sandbox_id = make_sandbox()
    start(driver, sandbox_id, SERVER)
    # A daemon that leaves its session and its parent: destroy must still find it.
    start(driver, sandbox_id, "setsid nohup sleep 300 >/dev/null 2>&1 < /dev/null &")
    start(driver, sandbox_id, "sleep 300")
    deadline = time.monotonic() + 5
    while len(marked_pids(driver, sandbox_id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = marked_pids(driver, sandbox_id)
    assert len(pids) >= 3

    driver.destroy(sandbox_id)

    assert marked_pids(driver, sandbox_id) == []
    assert not any(_alive(pid) for pid in pids)
    assert kernel_traces(driver, sandbox_id, make_sandbox.runtime[sandbox_id]) == {}
    assert not (driver.root / sandbox_id).exists()
    assert not driver.exists(sandbox_id)
    driver.destroy(sandbox_id)  # idempotent
    with pytest.raises(SandboxMissing):
        driver.processes(sandbox_id)


def test_destroy_a_paused_sandbox(driver, make_sandbox):
    sandbox_id = make_sandbox()
    start(driver, sandbox_id, "sleep 300")
    driver.pause(sandbox_id)
    driver.destroy(sandbox_id)
    assert marked_pids(driver, sandbox_id) == []
    assert kernel_traces(driver, sandbox_id, make_sandbox.runtime[sandbox_id]) == {}


def test_reconcile_removes_sandboxes_not_in_the_live_set(driver, make_sandbox):
    keep, drop = make_sandbox(), make_sandbox()
    start(driver, drop, "sleep 300")
    removed = driver.reconcile({keep})
    assert drop in removed and keep not in removed
    assert driver.exists(keep) and not driver.exists(drop)
    assert (
        marked_pids(driver, drop) == []
        and kernel_traces(driver, drop, make_sandbox.runtime[drop]) == {}
    )


def test_processes_survive_the_driver_that_started_them(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = start(driver, sandbox_id, "echo started; sleep 0.3; echo done")
    # Another driver object on the same root (a worker, a restarted server) sees it all.
    other = type(driver)(driver.root, driver.subnet, image_cache=driver.image_cache)
    assert other.wait_process(sandbox_id, pid, 10) == 0
    assert other.process_logs(sandbox_id, pid).stdout == "started\ndone\n"
    assert other.upstream(sandbox_id, 8080) == driver.upstream(sandbox_id, 8080)
