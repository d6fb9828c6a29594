"""Run the published SDK's own integration tests against a live server of ours.

    .venv/bin/python -m tests.sdk_suite.run [-n 2] [--run-excluded] [pytest args...]

Downloads the exact source distribution of `nullspace-sdk==0.1.9` (checked against a pinned
SHA-256), unpacks it, starts one live server (tests/live.py; a fresh PostgreSQL database when
DATABASE_URL points at one), makes a key and runs the SDK's integration files with
NULLSPACE_INTEGRATION=1. Tests that cannot apply to this product are listed, each with its
reason, in tests/sdk_suite/exclusions.toml; the plugin in this directory turns them into
skips (or, with --run-excluded, runs them anyway to see which ones now pass).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.live import ROOT, remove_tree, start_live_server

SDK_VERSION = "0.1.9"
SDIST_NAME = f"nullspace_sdk-{SDK_VERSION}.tar.gz"
SDIST_SHA256 = "43b8bf3aec064108ea315c592646879a327cfbf70cf17f9ccb5304b2cef35b64"
HERE = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("SDK_SUITE_CACHE", ROOT / ".cache" / "sdk-suite"))

# The SDK's live integration files: every one that honours NULLSPACE_INTEGRATION=1.
INTEGRATION_FILES = (
    "tests/test_integration.py",
    "tests/test_sandbox_integration.py",
    "tests/test_firecracker_sdk_user_journeys.py",
    "tests/test_firecracker_filesystem_parity.py",
    "tests/test_lifecycle_integration.py",
    "tests/test_pty_integration.py",
    "tests/test_firecracker_uploads_integration.py",
    "tests/test_quickstart_integration.py",
    "tests/test_firecracker_code_interpreter_integration.py",
    "tests/test_firecracker_code_interpreter_sdk_sync_async.py",
    "tests/test_desktop_firecracker_integration.py",
    "tests/test_connect_bucket_integration.py",
)


def fetch_sdk_source() -> Path:
    """The unpacked sdist (downloaded once into the cache, verified every time)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    archive = CACHE_DIR / SDIST_NAME
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"nullspace-sdk=={SDK_VERSION}",
                "-d",
                str(CACHE_DIR),
            ],
            check=True,
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        archive.unlink()
        raise SystemExit(f"{SDIST_NAME}: sha256 {digest} is not the pinned {SDIST_SHA256}")
    source = CACHE_DIR / f"nullspace_sdk-{SDK_VERSION}"
    if not (source / "tests").is_dir():
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE_DIR, filter="data")
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--workers", default="2", help="pytest-xdist workers (0 = none)")
    parser.add_argument("--run-excluded", action="store_true", help="run the listed exclusions too")
    args, pytest_args = parser.parse_known_args(argv)
    source = fetch_sdk_source()
    tmp = Path(tempfile.mkdtemp(prefix="sdk-suite-"))
    server = start_live_server(
        tmp,
        MAX_FILE_BYTES=str(200 * 1024 * 1024),
        # The suite calls from a browser origin of the hosted product.
        CORS_ALLOWED_ORIGINS="https://dashboard.nullspace.dev",
    )
    try:
        workers = int(args.workers)
        keys = [
            server.manage(
                "bootstrap",
                "--email",
                "live@example.com",
                "--team",
                "live",
                "--project",
                f"sdk-{n}",
            )
            for n in range(workers)
        ]
        # Another team's key: the suite checks that it sees none of the first one's sandboxes.
        outsider = server.manage(
            "bootstrap", "--email", "outsider@example.com", "--team", "outsider", "--project", "x"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("NULLSPACE_")}
        env.update(
            NULLSPACE_INTEGRATION="1",
            NULLSPACE_API_URL=server.url,
            NULLSPACE_API_KEY=server.api_key,
            NULLSPACE_SECONDARY_API_KEY=outsider,
            # timeout_action=hibernate is served: run the suite's coverage of it.
            NULLSPACE_TEST_TIMEOUT_HIBERNATE="1",
            HOME=str(server.data_dir),
            PYTHONPATH=str(HERE),
            SDK_SUITE_EXCLUSIONS=str(HERE / "exclusions.toml"),
            # One project per xdist worker: some tests kill every sandbox they can list.
            SDK_SUITE_WORKER_KEYS=",".join(f"gw{n}={key}" for n, key in enumerate(keys)),
        )
        if args.run_excluded:
            env["SDK_SUITE_RUN_EXCLUDED"] = "1"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "sdk_suite_exclusions",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
            "--timeout=300",
            *(["-n", args.workers] if workers else []),
            *([a for a in pytest_args if a.startswith("tests/")] or INTEGRATION_FILES),
            *[a for a in pytest_args if not a.startswith("tests/")],
        ]
        return subprocess.run(command, cwd=source, env=env).returncode
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    sys.exit(main())
