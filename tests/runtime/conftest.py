"""A local driver on a private runtime root, and sandboxes that are always destroyed."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from console.runtime import cgroups, netpolicy
from console.runtime import netns as net
from console.runtime.base import CreateSpec, ExecRequest
from console.runtime.isolated import IsolatedDriver
from console.runtime.procgroup import MARKER_VAR

SUBNET = os.environ.get("RUNTIME_SUBNET") or "10.213.0.0/16"
IMAGE_CACHE = Path(os.environ.get("RUNTIME_IMAGE_CACHE") or "/var/cache/nullspace")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """The isolated driver (the default), on a private runtime root."""
    drv = IsolatedDriver(tmp_path_factory.mktemp("runtime"), SUBNET, image_cache=IMAGE_CACHE)
    yield drv
    # Nothing of this instance may survive the module, whatever happened.
    drv.reconcile(set())


@pytest.fixture
def make_sandbox(driver):
    made: list[str] = []

    def make(**kwargs) -> str:
        sandbox_id = kwargs.pop("sandbox_id", f"sb_t{uuid.uuid4().hex[:10]}")
        mounts = kwargs.pop("mounts", ())
        make.runtime[sandbox_id] = driver.create(
            CreateSpec(sandbox_id=sandbox_id, **kwargs), mounts=mounts
        )
        made.append(sandbox_id)
        return sandbox_id

    make.runtime = {}  # what create returned, by sandbox id
    yield make
    for sandbox_id in made:
        driver.destroy(sandbox_id)


def run(driver, sandbox_id: str, command: str, *, timeout: float = 10, **kwargs):
    """Run a shell command to completion; (exit code, logs)."""
    pid = driver.start_process(
        sandbox_id,
        ExecRequest(command, shell=True, **kwargs),
        default_cwd="/workspace",
        envs={},
    )
    code = driver.wait_process(sandbox_id, pid, timeout)
    assert code is not None, f"{command!r} did not finish in {timeout}s"
    return code, driver.process_logs(sandbox_id, pid)


def start(driver, sandbox_id: str, command: str, **kwargs) -> int:
    return driver.start_process(
        sandbox_id, ExecRequest(command, shell=True, **kwargs), default_cwd="/workspace", envs={}
    )


def http_get(host: str, port: int, path: str = "/", timeout: float = 2.0) -> bytes:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def wait_http(host: str, port: int, path: str = "/", within: float = 10.0) -> bytes:
    deadline = time.monotonic() + within
    while True:
        try:
            return http_get(host, port, path, timeout=1.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def marked_pids(driver, sandbox_id: str) -> list[int]:
    """Every host pid of the sandbox: its cgroup when isolated, its marker variable when not."""
    if isinstance(driver, IsolatedDriver):
        return cgroups.pids(f"{driver.cgroup_parent}/{sandbox_id}")
    needle = f"{MARKER_VAR}={driver.tag}:{sandbox_id}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if needle in fh.read() + b"\0":
                        found.append(int(name))
            except OSError:
                continue
    return found


def kernel_traces(driver, sandbox_id: str, runtime: dict) -> dict:
    """What the kernel still holds for a sandbox: namespace, veth, cgroup, subnet claim."""
    traces = {}
    if (net.NETNS_DIR / f"{net.netns_prefix(driver.tag)}{sandbox_id}").exists():
        traces["netns"] = True
    host_if = runtime["network"].get("host_if")
    if host_if and os.path.exists(f"/sys/class/net/{host_if}"):
        traces["veth"] = host_if
    if host_if and host_if in (net.SHARED_DIR / "subnets.json").read_text():
        traces["subnet"] = runtime["network"]["cidr"]
    if driver.cgroup_base is not None and (driver.cgroup_base / sandbox_id).exists():
        traces["cgroup"] = True
    if isinstance(driver, IsolatedDriver):
        if cgroups.exists(f"{driver.cgroup_parent}/{sandbox_id}"):
            traces["cgroup"] = True
        if driver.crun.exists(sandbox_id):
            traces["container"] = True
        mounts = Path("/proc/self/mountinfo").read_text()
        for place in (str(driver.root / sandbox_id), str(driver._rootfs(sandbox_id))):
            if f" {place}" in mounts:
                traces.setdefault("mounts", []).append(place)
        if host_if and f"sb_{host_if}" in netpolicy.chains(driver.tag):
            traces["nft_chain"] = host_if
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        if str(driver.root / sandbox_id) in loops:
            traces["loop"] = True
        if driver._rootfs(sandbox_id).exists():
            traces["root_dir"] = True
    return traces


def put(driver, sandbox_id: str, path: str, text: str) -> None:
    """Write a file the way the file API does (owned by the sandbox's default user)."""
    files = driver.files(sandbox_id)
    files.write(files.path(path), [text.encode()], limit=10**7)


def get(driver, sandbox_id: str, path: str) -> str:
    files = driver.files(sandbox_id)
    with files.open_read(files.path(path)) as handle:
        return handle.read().decode()
