"""Local runtime latency: sandbox create time and exec round trip (median of 20 each).

Run as root for the full driver (network namespace, cgroup, mount namespace):
    .venv/bin/python bench/runtime_bench.py [--runs 20]
It uses a private runtime root under /tmp and removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.runtime import cgroups  # noqa: E402
from console.runtime.base import CreateSpec, ExecRequest  # noqa: E402
from console.runtime.isolated import IsolatedDriver  # noqa: E402
from console.runtime.local import LocalDriver  # noqa: E402


def median_ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(samples) * 1000:.1f} ms (p90 {p90 * 1000:.1f} ms, n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--subnet", default=os.environ.get("RUNTIME_SUBNET", "10.213.0.0/16"))
    parser.add_argument("--isolation", choices=("full", "none"), default="full")
    parser.add_argument(
        "--image-cache", default=os.environ.get("RUNTIME_IMAGE_CACHE", "/var/cache/nullspace")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nullspace-bench-") as root:
        driver: LocalDriver
        if args.isolation == "full":
            driver = IsolatedDriver(root, args.subnet, image_cache=Path(args.image_cache))
            began = time.perf_counter()
            image = driver.image()
            built = json.loads((image.rootfs.parent / "image.json").read_text())
            print(
                f"isolation=full image={image.name} (cached; its one-time build took "
                f"{built['build_seconds']} s; lookup now {time.perf_counter() - began:.3f} s)"
            )
            # The first create also formats the disk template of its size: not measured.
            driver.create(CreateSpec(sandbox_id="sb_benchwarm"))
            driver.destroy("sb_benchwarm")
        else:
            driver = LocalDriver(root, args.subnet)
            print(
                f"isolation=none netns={driver.use_netns} "
                f"cgroup={driver.cgroup_base is not None} mount_ns={driver.use_mounts}"
            )
        creates, execs, destroys = [], [], []
        try:
            for i in range(args.runs):
                began = time.perf_counter()
                driver.create(CreateSpec(sandbox_id=f"sb_bench{i}"))
                creates.append(time.perf_counter() - began)
            for _ in range(args.runs):
                began = time.perf_counter()
                pid = driver.start_process(
                    "sb_bench0", ExecRequest("echo hello", shell=True), default_cwd="", envs={}
                )
                code = driver.wait_process("sb_bench0", pid, 10)
                out = driver.process_logs("sb_bench0", pid).stdout
                execs.append(time.perf_counter() - began)
                assert (code, out) == (0, "hello\n"), (code, out)
            for i in range(args.runs):
                began = time.perf_counter()
                driver.destroy(f"sb_bench{i}")
                destroys.append(time.perf_counter() - began)
        finally:
            driver.reconcile(set())
    print(f"sandbox create:   {median_ms(creates)}")
    print(f"exec round trip:  {median_ms(execs)}  (start `echo hello`, wait, read logs)")
    print(f"sandbox destroy:  {median_ms(destroys)}")
    if args.isolation == "full":
        left = leftovers(driver, args.runs)
        print(
            f"after destroy:    {left or 'nothing left (mounts, loops, cgroups, netns, nft, dirs)'}"
        )


def leftovers(driver, runs: int) -> list[str]:
    """Whatever the destroys left behind: mounts, loop devices, cgroups, namespaces, rules."""
    found = []
    mounts = Path("/proc/self/mountinfo").read_text()
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    for i in range(runs):
        sandbox_id = f"sb_bench{i}"
        if str(driver.root / sandbox_id) in mounts or str(driver._rootfs(sandbox_id)) in mounts:
            found.append(f"{sandbox_id}: mount")
        if str(driver.root / sandbox_id) in loops:
            found.append(f"{sandbox_id}: loop device")
        if cgroups.exists(f"{driver.cgroup_parent}/{sandbox_id}"):
            found.append(f"{sandbox_id}: cgroup")
        if Path(f"/run/netns/ns-{driver.tag}-{sandbox_id}").exists():
            found.append(f"{sandbox_id}: netns")
        if (driver.root / sandbox_id).exists():
            found.append(f"{sandbox_id}: directory")
    from console.runtime import netpolicy

    found += [f"nft chain {c}" for c in netpolicy.chains(driver.tag)]
    return found


if __name__ == "__main__":
    main()
