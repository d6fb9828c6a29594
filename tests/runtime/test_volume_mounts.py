"""Volume mounts in the local driver (console/runtime/base.py VolumeMount): bound into every
process of the sandbox, read-only enforced by the kernel, kept across pause/resume, and
never bound through a symlink planted in the source."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from console.runtime.base import ExecRequest, RuntimeError_, VolumeMount
from tests.runtime.conftest import run


@pytest.fixture
def target():
    """A mount point outside /workspace (the local driver makes it on the host; removed after)."""
    path = f"/nsvol-test-{uuid.uuid4().hex[:8]}"
    yield path
    try:
        os.rmdir(path)
    except OSError:
        pass


@pytest.fixture
def source(tmp_path) -> Path:
    directory = tmp_path / "volume"
    (directory / "sub").mkdir(parents=True)
    (directory / "sub" / "seed.txt").write_text("seed")
    return directory.resolve()


def needs_mounts(driver) -> None:
    if not driver.use_mounts:
        pytest.skip("mount namespaces need root")


def test_read_write_mount_is_shared_with_the_host(driver, make_sandbox, source, target):
    needs_mounts(driver)
    sandbox = make_sandbox(mounts=[VolumeMount(source, target, read_only=False)])
    code, logs = run(driver, sandbox, f"cat {target}/sub/seed.txt && echo made > {target}/new.txt")
    assert (code, logs.stdout) == (0, "seed")
    assert (source / "new.txt").read_text() == "made\n"
    (source / "from-host.txt").write_text("host")  # and the other way round, at once
    assert run(driver, sandbox, f"cat {target}/from-host.txt")[1].stdout == "host"


def test_read_only_mount_refuses_writes(driver, make_sandbox, source, target):
    needs_mounts(driver)
    sandbox = make_sandbox(mounts=[VolumeMount(source / "sub", target, read_only=True)])
    code, logs = run(driver, sandbox, f"cat {target}/seed.txt; echo x > {target}/x.txt")
    assert code != 0 and "Read-only file system" in logs.stderr
    assert logs.stdout == "seed" and not (source / "sub" / "x.txt").exists()
    # Every later process gets the same read-only mount, also after a pause and resume.
    driver.pause(sandbox)
    driver.resume(sandbox)
    code, logs = run(driver, sandbox, f"touch {target}/y.txt")
    assert code != 0 and "Read-only file system" in logs.stderr


def test_a_symlink_in_the_source_is_never_followed(driver, make_sandbox, source, target, tmp_path):
    needs_mounts(driver)
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("secret")
    sandbox = make_sandbox(mounts=[VolumeMount(source / "sub", target, read_only=True)])
    # Another sandbox with the volume swaps the subpath for a link to a host directory.
    (source / "sub" / "seed.txt").unlink()
    (source / "sub").rmdir()
    (source / "sub").symlink_to(secret)
    with pytest.raises(RuntimeError_) as refused:
        driver.start_process(
            sandbox, ExecRequest(f"cat {target}/key", shell=True), default_cwd="/workspace", envs={}
        )
    assert refused.value.code == "exec_failed"


def test_mounts_without_mount_namespaces_are_refused(tmp_path, source, target):
    from console.runtime.base import CreateSpec
    from console.runtime.local import LocalDriver

    driver = LocalDriver(tmp_path / "runtime", "10.213.0.0/16", netns="off")
    driver.use_mounts = False  # as without root
    with pytest.raises(RuntimeError_) as refused:
        driver.create(CreateSpec(sandbox_id="sb_nomounts"), [VolumeMount(source, target, False)])
    assert refused.value.code == "not_implemented"
    driver.reconcile(set())
