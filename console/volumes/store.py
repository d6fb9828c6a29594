"""Where volumes keep their files: a store behind one small interface (docs/volumes.md).

Two stores exist:

- ImageStore (the default as root with loop devices): each volume is its own ext4 file
  system in a sparse image file of the quota's size, loop-mounted under
  VOLUMES_ROOT/mnt/<id>. The kernel enforces the size on every write path (the API,
  uploads, and sandboxes writing through a bind mount) with ENOSPC.
- DirectoryStore (for a shared file system such as NFS, CephFS or JuiceFS, which
  several hosts mount at VOLUMES_ROOT): each volume is a plain directory. The API
  counts the quota itself; writes from sandboxes are only bounded if the shared file
  system enforces a directory quota (VOLUMES_EXTERNAL_QUOTA), so without it read-write
  mounts are refused.

Nothing here knows about projects or the database: a store maps volume ids to
directories. Mounting is idempotent and safe across processes (a file lock per volume).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from console.runtime.base import RuntimeError_

VOLUME_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
MKFS_TIMEOUT = 120


class VolumeStoreError(RuntimeError_):
    code = "volume_error"


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    inode_count: int  # files, directories and links in the volume
    capacity_bytes: int  # what the volume can hold in all


def _check_id(volume_id: str) -> str:
    if not volume_id or not set(volume_id) <= VOLUME_ID_CHARS or len(volume_id) > 40:
        raise VolumeStoreError(f"bad volume id {volume_id!r}", code="invalid_request")
    return volume_id


def _run(*argv: str, timeout: float = 60) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["failed"]
        raise VolumeStoreError(f"{argv[0]}: {detail[0]}", code="volume_error")


class VolumeStore(ABC):
    name: str
    # Whether the kernel (or the shared file system) bounds writes made through a mount.
    enforces_mount_quota: bool

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    @abstractmethod
    def create(self, volume_id: str, max_bytes: int) -> None: ...

    @abstractmethod
    def destroy(self, volume_id: str) -> None:
        """Remove the volume and every file in it. Idempotent."""

    @abstractmethod
    def path(self, volume_id: str) -> Path:
        """The real directory of the volume's root, ready for use (mounted if need be)."""

    @abstractmethod
    def usage(self, volume_id: str, max_bytes: int) -> Usage: ...

    @abstractmethod
    def space_left(self, volume_id: str, max_bytes: int) -> Callable[[], int]:
        """How many more bytes the volume may take, asked before each write."""

    def release_all(self) -> None:  # noqa: B027 (a store without host resources has nothing to do)
        """Let go of every host resource (mounts) without deleting data; for shutdown and tests."""

    def destroy_all(self) -> None:  # noqa: B027
        """Remove every volume under this root (tests and benchmarks clean up with it)."""


class DirectoryStore(VolumeStore):
    name = "directory"

    def __init__(self, root: Path, *, external_quota: bool = False) -> None:
        super().__init__(root)
        self.enforces_mount_quota = external_quota

    def _dir(self, volume_id: str) -> Path:
        return self.root / "dirs" / _check_id(volume_id)

    def create(self, volume_id: str, max_bytes: int) -> None:
        directory = self._dir(volume_id)
        directory.mkdir(parents=True, exist_ok=False)
        directory.chmod(0o755)

    def destroy(self, volume_id: str) -> None:
        shutil.rmtree(self._dir(volume_id), ignore_errors=True)

    def destroy_all(self) -> None:
        shutil.rmtree(self.root / "dirs", ignore_errors=True)

    def path(self, volume_id: str) -> Path:
        directory = self._dir(volume_id)
        if not directory.is_dir():
            raise VolumeStoreError(f"volume {volume_id} has no storage", code="not_found")
        return directory

    def usage(self, volume_id: str, max_bytes: int) -> Usage:
        used = count = 0
        for dirpath, dirnames, filenames in os.walk(self.path(volume_id)):
            for name in dirnames + filenames:
                try:
                    used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    continue
                count += 1
        return Usage(used_bytes=used, inode_count=count, capacity_bytes=max_bytes)

    def space_left(self, volume_id: str, max_bytes: int) -> Callable[[], int]:
        return lambda: max(0, max_bytes - self.usage(volume_id, max_bytes).used_bytes)


class ImageStore(VolumeStore):
    name = "image"
    enforces_mount_quota = True

    def _image(self, volume_id: str) -> Path:
        return self.root / "images" / f"{_check_id(volume_id)}.img"

    def _baseline_file(self, volume_id: str) -> Path:
        return self.root / "images" / f"{_check_id(volume_id)}.json"

    def _mountpoint(self, volume_id: str) -> Path:
        return self.root / "mnt" / _check_id(volume_id)

    @contextmanager
    def _locked(self, volume_id: str) -> Iterator[None]:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{_check_id(volume_id)}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def create(self, volume_id: str, max_bytes: int) -> None:
        image = self._image(volume_id)
        image.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(volume_id):
            if image.exists():
                raise VolumeStoreError(f"volume {volume_id} exists", code="conflict")
            try:
                with open(image, "xb") as handle:
                    handle.truncate(max_bytes)  # sparse: takes disk only as files are written
                _run(
                    "mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", "-i", "16384",
                    "-J", "size=4", "-L", volume_id[:16],
                    "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard,root_owner=0:0",
                    str(image),
                    timeout=MKFS_TIMEOUT,
                )  # fmt: skip
                root = self._mount(volume_id)
                (root / "lost+found").rmdir()
                root.chmod(0o755)
                st = os.statvfs(root)
                baseline = {
                    "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
                    "used_inodes": st.f_files - st.f_ffree,
                    "total_bytes": st.f_blocks * st.f_frsize,
                }
                self._baseline_file(volume_id).write_text(json.dumps(baseline))
            except BaseException:
                self._unmount(volume_id)
                image.unlink(missing_ok=True)
                self._baseline_file(volume_id).unlink(missing_ok=True)
                raise

    def _mount(self, volume_id: str) -> Path:
        """Mount the image (caller holds the lock); the mounted root."""
        point = self._mountpoint(volume_id)
        if os.path.ismount(point):
            return point
        if not point.exists():
            point.mkdir(parents=True)
            # Unmounted, the empty mountpoint must refuse writes, so a process that binds it
            # by mistake cannot fill the host disk around the quota.
            point.chmod(0o000)
            subprocess.run(["chattr", "+i", str(point)], capture_output=True)
        _run(
            "mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime,discard",
            str(self._image(volume_id)), str(point),
        )  # fmt: skip
        return point

    def _unmount(self, volume_id: str) -> None:
        point = self._mountpoint(volume_id)
        if os.path.ismount(point):
            # Lazy: a sandbox process may sit in the volume; the mount goes once it leaves.
            result = subprocess.run(["umount", str(point)], capture_output=True)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)

    def destroy(self, volume_id: str) -> None:
        with self._locked(volume_id):
            self._unmount(volume_id)
            point = self._mountpoint(volume_id)
            if point.exists():
                subprocess.run(["chattr", "-i", str(point)], capture_output=True)
                point.rmdir()
            self._image(volume_id).unlink(missing_ok=True)
            self._baseline_file(volume_id).unlink(missing_ok=True)
        (self.root / "locks" / f"{volume_id}.lock").unlink(missing_ok=True)

    def path(self, volume_id: str) -> Path:
        point = self._mountpoint(volume_id)
        if os.path.ismount(point):
            return point
        if not self._image(volume_id).exists():
            raise VolumeStoreError(f"volume {volume_id} has no storage", code="not_found")
        with self._locked(volume_id):
            return self._mount(volume_id)

    def usage(self, volume_id: str, max_bytes: int) -> Usage:
        st = os.statvfs(self.path(volume_id))
        try:
            baseline = json.loads(self._baseline_file(volume_id).read_text())
        except (OSError, ValueError):
            baseline = {"used_bytes": 0, "used_inodes": 0}
        used = (st.f_blocks - st.f_bfree) * st.f_frsize - baseline["used_bytes"]
        inodes = (st.f_files - st.f_ffree) - baseline["used_inodes"]
        capacity = st.f_blocks * st.f_frsize - baseline["used_bytes"]
        return Usage(used_bytes=max(0, used), inode_count=max(0, inodes), capacity_bytes=capacity)

    def space_left(self, volume_id: str, max_bytes: int) -> Callable[[], int]:
        point = self.path(volume_id)

        def left() -> int:
            st = os.statvfs(point)
            return st.f_bavail * st.f_frsize

        return left

    def destroy_all(self) -> None:
        """Remove every volume under this root (tests and benchmarks clean up with it)."""
        images = self.root / "images"
        for image in images.glob("*.img") if images.is_dir() else ():
            self.destroy(image.stem)
        self.release_all()

    def release_all(self) -> None:
        mounts = self.root / "mnt"
        if not mounts.is_dir():
            return
        for point in mounts.iterdir():
            if set(point.name) <= VOLUME_ID_CHARS:
                with self._locked(point.name):
                    self._unmount(point.name)


def images_work() -> bool:
    return (
        os.geteuid() == 0
        and Path("/dev/loop-control").exists()
        and all(shutil.which(tool) for tool in ("mkfs.ext4", "mount", "umount"))
    )


@functools.cache
def _store(root: Path, backend: str, external_quota: bool) -> VolumeStore:
    if backend == "auto":
        backend = "image" if images_work() else "directory"
    if backend == "image":
        if not images_work():
            raise VolumeStoreError(
                "VOLUMES_BACKEND=image needs root, /dev/loop-control, mkfs.ext4 and mount"
            )
        return ImageStore(root)
    return DirectoryStore(root, external_quota=external_quota)


def get_store() -> VolumeStore:
    return _store(settings.VOLUMES_ROOT, settings.VOLUMES_BACKEND, settings.VOLUMES_EXTERNAL_QUOTA)


def store_named(name: str) -> VolumeStore:
    """The store a volume was made in (its row keeps the name), under the configured root."""
    return _store(settings.VOLUMES_ROOT, name, settings.VOLUMES_EXTERNAL_QUOTA)
