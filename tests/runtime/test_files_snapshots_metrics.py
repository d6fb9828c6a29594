"""Files stay inside the sandbox's root; snapshots round-trip; metrics measure real use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from console.runtime.base import FileMissing, RuntimeError_, SandboxMissing
from tests.runtime.conftest import run, start


@pytest.mark.parametrize(
    "path",
    [
        "escape-dir/hostname",
        "escape-file",
        "nested/escape-dir/hostname",
        "dotdot/hostname",
        "../../../../../../etc/hostname",
    ],
)
def test_symlinks_and_dotdot_resolve_inside_the_sandbox(driver, make_sandbox, path):
    """A sandbox's absolute links and `..` mean its own root: the host's /etc is never
    read or written, whatever the sandbox (or a racing process) puts in the path."""
    sandbox_id = make_sandbox()
    files = driver.files(sandbox_id)
    files.makedirs("/workspace/nested")
    files.symlink("/workspace/escape-dir", "/etc")
    files.symlink("/workspace/escape-file", "/etc/hostname")
    files.symlink("/workspace/nested/escape-dir", "../escape-dir")
    files.symlink("/workspace/dotdot", "../../../../../etc")
    host_hostname = Path("/etc/hostname").read_bytes()
    with files.open_read(files.path(path)) as handle:
        assert handle.read() == f"{sandbox_id.replace('_', '-').lower()}\n".encode()
    files.write(files.path(path), [b"written inside"], limit=100)
    assert Path("/etc/hostname").read_bytes() == host_hostname
    with files.open_read("/etc/hostname") as handle:
        assert handle.read() == b"written inside"


def test_paths_resolve_from_the_cwd_or_the_home(driver, make_sandbox):
    sandbox_id = make_sandbox()
    files = driver.files(sandbox_id)
    assert files.path("a/b.txt") == "/workspace/a/b.txt"
    assert files.path("./a//b.txt") == "/workspace/a/b.txt"
    assert files.path("../etc/passwd") == "/etc/passwd"
    assert files.path("notes.txt", user="user") == "/home/user/notes.txt"
    assert files.path("notes.txt", user="root") == "/root/notes.txt"
    assert driver.files(sandbox_id, cwd="/srv").path("x") == "/srv/x"
    # A cwd of the sandbox's own wins over the user's home (the client writes "owned.txt"
    # as `user` into a sandbox created with cwd=/home/user/fs-parity and finds it there).
    assert driver.files(sandbox_id, cwd="/srv").path("x", user="user") == "/srv/x"
    assert driver.files(sandbox_id, cwd="/srv").path("x", user="root") == "/srv/x"
    files.write("/tmp/anywhere.txt", [b"tmp"], limit=10)
    assert files.stat("/tmp/anywhere.txt").size == 3
    with pytest.raises(FileMissing):
        files.stat("/workspace/nope.txt")
    with pytest.raises(SandboxMissing):
        driver.files("sb_doesnotexist")
    with pytest.raises(SandboxMissing):
        driver.files("../../etc")


def test_kernel_file_systems_are_not_written_beneath(driver, make_sandbox):
    """/proc and /dev are mounted inside the sandbox only: a file written there from the
    host side would land underneath, invisible inside. Such writes are refused."""
    sandbox_id = make_sandbox()
    files = driver.files(sandbox_id)
    for path in ("/proc/x.txt", "/dev/shm/x", "/dev"):
        with pytest.raises(RuntimeError_) as refused:
            files.write(path, [b"x"], limit=10)
        assert refused.value.code == "invalid_request" and "kernel file system" in str(
            refused.value
        )
    for action in (
        lambda: files.mkdir("/proc/dir"),
        lambda: files.remove("/dev/null"),
        lambda: files.rename("/workspace", "/proc/w"),
        lambda: files.chmod("/dev/null", 0o600),
        lambda: files.symlink("/proc/link", "/workspace"),
    ):
        with pytest.raises(RuntimeError_, match="kernel file system"):
            action()
    # Nothing landed under the sandbox's /proc on the host side; files elsewhere still work.
    assert not os.path.exists(os.path.join(files.root, "proc", "x.txt"))
    assert files.write("/tmp/procless.txt", [b"ok"], limit=10).size == 2


def test_ownership_follows_the_user(driver, make_sandbox):
    sandbox_id = make_sandbox()
    files = driver.files(sandbox_id)
    assert files.write("/workspace/mine.txt", [b"a"], limit=10).owner == "user"
    assert files.write("/workspace/root.txt", [b"a"], limit=10, user="root").owner == "root"
    files.chmod("/workspace/root.txt", 0o600)
    # An overwrite without a user keeps mode and owner.
    kept = files.write("/workspace/root.txt", [b"bb"], limit=10)
    assert (kept.owner, kept.mode, kept.size) == ("root", 0o600, 2)
    code, logs = run(driver, sandbox_id, "stat -c '%U %a' /workspace/root.txt; cat root.txt")
    assert code == 1 or "Permission denied" in logs.stderr, logs
    assert logs.stdout.startswith("root 600")
    with pytest.raises(RuntimeError_):
        files.write("/workspace/x", [b"a"], limit=10, user="nobody-here")


def test_file_info_and_listing(driver, make_sandbox):
    sandbox_id = make_sandbox()
    files = driver.files(sandbox_id)
    files.makedirs("/workspace/src/pkg")
    files.write("/workspace/src/app.py", [b"print('hi')\n"], limit=100)
    files.write("/workspace/src/pkg/deep.txt", [b"deep"], limit=100)
    files.chmod("/workspace/src/app.py", 0o640)
    files.symlink("/workspace/etc-link", "/etc")

    info = driver.file_info(sandbox_id, "src/app.py")
    assert (info.name, info.path, info.is_dir, info.size, info.type) == (
        "app.py",
        "/workspace/src/app.py",
        False,
        12,
        "file",
    )
    assert info.mode == 0o640 and info.permissions == "-rw-r-----"
    assert (info.owner, info.group) == ("user", "user") and info.modified_time.endswith("Z")
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
    """A snapshot is the writable layer: the workspace and every other change, deletions too."""
    source = make_sandbox()
    root = driver.host_path(source, "/workspace")
    files = driver.files(source)
    files.makedirs("/workspace/app")
    files.write("/workspace/app/main.py", [b"print('restored')\n"], limit=100)
    files.write("/workspace/app/run.sh", [b"#!/bin/sh\necho ok\n"], limit=100, mode=0o755)
    blob = os.urandom(100_000)
    files.write("/workspace/blob.bin", [blob], limit=200_000)
    files.symlink("/workspace/main-link", "app/main.py")
    code, _ = run(driver, source, "sudo rm /etc/issue && echo changed | sudo tee /etc/motd")
    assert code == 0

    archive = tmp_path / "snap.tar.gz"
    size = driver.snapshot(source, archive)
    assert size == archive.stat().st_size > 0

    restored = make_sandbox(restore_from=archive)
    new_files = driver.files(restored)
    with new_files.open_read("/workspace/app/main.py") as fh:
        assert fh.read() == b"print('restored')\n"
    with new_files.open_read("/workspace/blob.bin") as fh:
        assert fh.read() == blob
    assert new_files.stat("/workspace/main-link").symlink_target == "app/main.py"
    # The copy is independent of its source.
    new_files.write("/workspace/app/main.py", [b"changed"], limit=100)
    with files.open_read("/workspace/app/main.py") as fh:
        assert fh.read() == b"print('restored')\n"
    code, logs = run(driver, restored, "sh app/run.sh; cat /etc/motd; ls /etc/issue")
    assert logs.stdout == "ok\nchanged\n" and "No such file" in logs.stderr, logs
    assert root.exists()


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_metrics_measure_a_busy_loop(driver, make_sandbox):
    sandbox_id = make_sandbox(vcpus=1, memory_mb=256)
    driver.files(sandbox_id).write("/workspace/data.bin", [os.urandom(300_000)], limit=10**6)
    idle = driver.metrics(sandbox_id)
    assert idle.cpu_percent < 10
    pid = start(driver, sandbox_id, "python3 -c 'while True: pass'")
    time.sleep(0.5)
    # What the loop really got, read from the kernel beside the driver: on a loaded machine
    # it is far below a whole core, and the metric must say the same.
    driver.metrics(sandbox_id)
    began, ticks = time.monotonic(), _cpu_ticks(pid)
    time.sleep(0.5)
    busy = driver.metrics(sandbox_id)
    got = (_cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - began) * 100
    assert got > 3, got  # it did run
    assert abs(busy.cpu_percent - got) < 15, (busy, got)
    assert busy.cpu_count == 1
    assert busy.mem_used_bytes > 1_000_000
    assert busy.mem_total_bytes == 256 * 1024 * 1024
    assert busy.disk_used_bytes >= 300_000
    assert busy.disk_total_bytes > busy.disk_used_bytes
    if driver.use_netns:
        assert busy.network_rx_bytes is not None and busy.network_tx_bytes is not None
    driver.kill_process(sandbox_id, pid)
