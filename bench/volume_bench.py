"""Volume transfer throughput and large-directory listing, against a live server.

Starts the real server (manage.py serve) on a free loopback port with its own data
directory, creates a volume, and measures in the same run, `--rounds` times each
(default 3, median reported):

  - a 200 MiB random file: `cp` to a directory on the same disk, and straight into the
    volume's mounted file system (the local baselines); the real CLI's
    `nullspace volume upload` (resumable, default and --concurrency 4) and
    `nullspace volume download`; the raw signed download URL read with httpx;
  - a 10,000-file directory: GET /v1/volumes/{id}/files (one page, all FileInfo),
    the real CLI's `volume ls-files` (which also prints a table), and a local
    scandir + lstat of the same directory (what `ls -l` costs).

Every transfer is checked by SHA-256. Loopback only; bounded by the counts above.

    .venv/bin/python bench/volume_bench.py [--rounds 3] [--size-mib 200] [--files 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from tests.live import VENV_BIN, LiveServer, remove_tree, start_live_server  # noqa: E402

MIB = 1024 * 1024


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def cli(server: LiveServer, *args: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "nullspace"), *args],
        cwd=server.data_dir,
        env=server.cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"nullspace {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def copy_synced(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    size = args.size_mib * MIB

    work = Path(tempfile.mkdtemp(prefix="volume-bench-"))
    server = start_live_server(
        work,
        MAX_FILE_BYTES=str(size + 64 * MIB),
        VOLUME_MAX_BYTES=str(3 * size + 256 * MIB),
        API_RATE_LIMIT_PER_MINUTE="100000",
    )
    headers = {"Authorization": f"Bearer {server.api_key}"}
    try:
        volume = httpx.post(
            f"{server.url}/v1/volumes", json={"name": "bench"}, headers=headers
        ).json()
        mount = server.data_dir / "volumes" / "mnt" / volume["id"]
        source = work / "source.bin"
        with source.open("wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(MIB))
        expected = sha256(source)
        local_dir = work / "local"
        local_dir.mkdir()

        results: dict[str, list[float]] = {}

        def sample(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(seconds)

        for round_number in range(args.rounds):
            sample(
                "local cp (same disk, fsync)",
                timed(lambda: copy_synced(source, local_dir / "copy.bin")),
            )
            sample(
                "local cp into the volume's mount",
                timed(lambda: copy_synced(source, mount / "direct.bin")),
            )
            (mount / "direct.bin").unlink()
            sample(
                "CLI volume upload (resumable)",
                timed(
                    lambda: cli(
                        server, "volume", "upload", "bench", str(source), "/up.bin", "--json"
                    )
                ),
            )
            sample(
                "CLI volume upload --concurrency 4",
                timed(
                    lambda: cli(server, "volume", "upload", "bench", str(source), "/up4.bin",
                                "--concurrency", "4", "--json")
                ),
            )  # fmt: skip
            target = work / f"down-{round_number}.bin"
            sample(
                "CLI volume download",
                timed(
                    lambda t=target: cli(server, "volume", "download", "bench", "/up.bin", str(t))
                ),
            )
            url = httpx.post(
                f"{server.url}/v1/volumes/{volume['id']}/files/download-url",
                json={"path": "/up4.bin"},
                headers=headers,
            ).json()["url"]
            raw = work / "raw.bin"

            def fetch(url: str = url, raw: Path = raw) -> None:
                with httpx.stream("GET", url, timeout=300) as response, raw.open("wb") as out:
                    for chunk in response.iter_bytes(MIB):
                        out.write(chunk)

            sample("signed URL download (httpx)", timed(fetch))
            for path in (mount / "up.bin", mount / "up4.bin", target, raw):
                if sha256(path) != expected:
                    raise SystemExit(f"checksum mismatch for {path}")
            target.unlink()
            cli(server, "volume", "rm", "bench", "/up.bin")
            cli(server, "volume", "rm", "bench", "/up4.bin")

        many = mount / "many"
        many.mkdir()
        for n in range(args.files):
            (many / f"file-{n:05d}.txt").write_bytes(b"x")
        listing: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            began = time.perf_counter()
            entries = httpx.get(
                f"{server.url}/v1/volumes/{volume['id']}/files",
                params={"path": "/many"},
                headers=headers,
                timeout=120,
            ).json()
            listing.setdefault("GET /v1/volumes/{id}/files", []).append(time.perf_counter() - began)
            if len(entries) != args.files:
                raise SystemExit(f"listed {len(entries)} of {args.files} files")
            listing.setdefault("CLI volume ls-files (table)", []).append(
                timed(lambda: cli(server, "volume", "ls-files", "bench", "/many"))
            )
            listing.setdefault("local scandir + lstat", []).append(
                timed(lambda: [e.stat(follow_symlinks=False) for e in os.scandir(many)])
            )

        load = os.getloadavg()
        print(f"\nVolume benchmark: {args.size_mib} MiB file, {args.rounds} rounds (median), "
              f"{os.cpu_count()} CPUs, load {load[0]:.2f}\n")  # fmt: skip
        base = statistics.median(results["local cp (same disk, fsync)"])
        print("| transfer | median s | MiB/s | vs local cp |")
        print("|---|---:|---:|---:|")
        for name, samples in results.items():
            median = statistics.median(samples)
            print(f"| {name} | {median:.2f} | {args.size_mib / median:.0f} | {base / median:.0%} |")
        print(f"\n| list {args.files} files | median ms |")
        print("|---|---:|")
        for name, samples in listing.items():
            print(f"| {name} | {statistics.median(samples) * 1000:.0f} |")
    finally:
        server.stop()
        remove_tree(work)


if __name__ == "__main__":
    main()
