"""Paths stay inside /workspace; snapshots round-trip; metrics measure real use."""

from __future__ import annotations

import os
import time

import pytest

from console.runtime.base import FileMissing, PathRefused, SandboxMissing
from tests.runtime.conftest import start


@pytest.mark.parametrize(
    "path",
    [
        "../outside",
        "/workspace/../etc/passwd",
        "sub/../../x",
        "/etc/passwd",
        "/",
        "/workspacex/file",
        "/tmp",
        "escape-dir/passwd",
        "escape-file",
        "nested/escape-dir/hosts",
    ],
)
def test_escapes_are_refused(driver, make_sandbox, path):
    sandbox_id = make_sandbox()
    root = driver.host_path(sandbox_id, "/workspace")
    (root / "sub").mkdir()
    (root / "nested").mkdir()
    os.symlink("/etc", root / "escape-dir")
    os.symlink("/etc/hostname", root / "escape-file")
    os.symlink("../escape-dir", root / "nested" / "escape-dir")
    with pytest.raises(PathRefused):
        driver.host_path(sandbox_id, path)


def test_paths_inside_the_workspace(driver, make_sandbox):
    sandbox_id = make_sandbox()
    root = driver.host_path(sandbox_id, "/workspace")
    assert root.name == "workspace" and root.is_dir()
    assert driver.host_path(sandbox_id, "a/b.txt") == root / "a" / "b.txt"
    assert driver.host_path(sandbox_id, "/workspace/a/b.txt") == root / "a" / "b.txt"
    assert driver.host_path(sandbox_id, "./a//b.txt") == root / "a" / "b.txt"
    (root / "real").mkdir()
    os.symlink("real", root / "inside-link")
    assert driver.host_path(sandbox_id, "inside-link/x") == root / "real" / "x"
    # The link itself (to remove or rename it) even when it points outside.
    os.symlink("/etc", root / "out-link")
    assert driver.host_path(sandbox_id, "out-link", follow_symlinks=False) == root / "out-link"
    with pytest.raises(FileMissing):
        driver.host_path(sandbox_id, "nope.txt", must_exist=True)
    with pytest.raises(SandboxMissing):
        driver.host_path("sb_doesnotexist", "x")
    with pytest.raises(SandboxMissing):
        driver.host_path("../../etc", "x")


def test_file_info_and_listing(driver, make_sandbox):
    sandbox_id = make_sandbox()
    root = driver.host_path(sandbox_id, "/workspace")
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "src" / "pkg" / "deep.txt").write_text("deep")
    (root / "src" / "app.py").chmod(0o640)
    os.symlink("/etc", root / "etc-link")

    info = driver.file_info(sandbox_id, "src/app.py")
    assert (info.name, info.path, info.is_dir, info.size, info.type) == (
        "app.py",
        "/workspace/src/app.py",
        False,
        12,
        "file",
    )
    assert info.mode == 0o640 and info.permissions == "-rw-r-----"
    assert info.owner and info.group and info.modified_time.endswith("Z")
    link = driver.file_info(sandbox_id, "etc-link")
    assert link.type == "symlink" and link.symlink_target == "/etc"

    top = driver.list_files(sandbox_id, "/workspace")
    assert [e.path for e in top] == ["/workspace/etc-link", "/workspace/src"]
    deep = driver.list_files(sandbox_id, "/workspace", depth=3)
    assert "/workspace/src/pkg/deep.txt" in [e.path for e in deep]
    # A symlinked directory is listed, never walked into.
    assert not [e for e in deep if e.path.startswith("/workspace/etc-link/")]
    with pytest.raises(FileMissing):
        driver.list_files(sandbox_id, "missing")


def test_snapshot_and_restore_round_trip(driver, make_sandbox, tmp_path):
    source = make_sandbox()
    root = driver.host_path(source, "/workspace")
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("print('restored')\n")
    (root / "app" / "run.sh").write_text("#!/bin/sh\necho ok\n")
    (root / "app" / "run.sh").chmod(0o755)
    (root / "blob.bin").write_bytes(os.urandom(100_000))
    os.symlink("app/main.py", root / "main-link")

    archive = tmp_path / "snap.tar.gz"
    size = driver.snapshot(source, archive)
    assert size == archive.stat().st_size > 0

    restored = make_sandbox(restore_from=archive)
    new_root = driver.host_path(restored, "/workspace")
    assert (new_root / "app" / "main.py").read_text() == "print('restored')\n"
    assert (new_root / "blob.bin").read_bytes() == (root / "blob.bin").read_bytes()
    assert os.access(new_root / "app" / "run.sh", os.X_OK)
    assert os.readlink(new_root / "main-link") == "app/main.py"
    # The copy is independent of its source.
    (new_root / "app" / "main.py").write_text("changed")
    assert (root / "app" / "main.py").read_text() == "print('restored')\n"
    pid = start(driver, restored, "sh app/run.sh")
    assert driver.wait_process(restored, pid, 10) == 0
    assert driver.process_logs(restored, pid).stdout == "ok\n"


def test_metrics_measure_a_busy_loop(driver, make_sandbox):
    sandbox_id = make_sandbox(vcpus=1, memory_mb=256)
    driver.host_path(sandbox_id, "data.bin").write_bytes(b"x" * 300_000)
    idle = driver.metrics(sandbox_id)
    assert idle.cpu_percent < 10
    pid = start(driver, sandbox_id, "python3 -c 'while True: pass'")
    time.sleep(0.5)
    driver.metrics(sandbox_id)
    time.sleep(0.5)
    busy = driver.metrics(sandbox_id)
    assert busy.cpu_percent > 25, busy  # one core of a shared machine: ~100 when idle
    assert busy.cpu_count == 1
    assert busy.mem_used_bytes > 1_000_000
    assert busy.mem_total_bytes == 256 * 1024 * 1024
    assert busy.disk_used_bytes >= 300_000
    assert busy.disk_total_bytes > busy.disk_used_bytes
    if driver.use_netns:
        assert busy.network_rx_bytes is not None and busy.network_tx_bytes is not None
    driver.kill_process(sandbox_id, pid)
