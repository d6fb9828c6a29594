"""Local runtime latency: sandbox create time and exec round trip (median of 20 each).

Run as root for the full driver (network namespace, cgroup, mount namespace):
    .venv/bin/python bench/runtime_bench.py [--runs 20]
It uses a private runtime root under /tmp and removes everything it made.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.runtime.base import CreateSpec, ExecRequest  # noqa: E402
from console.runtime.local import LocalDriver  # noqa: E402


def median_ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(samples) * 1000:.1f} ms (p90 {p90 * 1000:.1f} ms, n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--subnet", default="10.213.0.0/16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nullspace-bench-") as root:
        driver = LocalDriver(root, args.subnet)
        print(
            f"netns={driver.use_netns} cgroup={driver.cgroup_base is not None} "
            f"mount_ns={driver.use_mounts}"
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


if __name__ == "__main__":
    main()
