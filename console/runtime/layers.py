"""A sandbox's root filesystem: the image, a writable layer on a size-limited disk, volumes.

    <sandbox>/disk.img   a sparse ext4 image of disk_mb (the writable layer's disk)
    <sandbox>/disk/      where it is mounted: upper/ and work/ of the overlay
    <rootfs>             the overlay (image below, upper/ on top): the sandbox's `/`,
                         mounted under /run (crun enters it as the sandbox's root user,
                         who may not traverse a private DATA_DIR)

Everything a sandbox writes (its /workspace, /tmp, /home, packages it installs) lands
in upper/, on its own ext4 disk: writing past disk_mb fails with ENOSPC inside the
sandbox, and the host file never grows past disk_mb (docs/runtime.md explains why a
loop-mounted ext4 rather than tmpfs or project quotas). Volumes are bind mounts made
here, before the sandbox starts, so crun's recursive bind of the root carries them in;
read-only ones are read-only mounts (the kernel refuses writes, inside and out).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from console.runtime.base import RuntimeError_, VolumeMount

MIN_DISK_MB = 64
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16
_libc = ctypes.CDLL(None, use_errno=True)
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env=TOOL_ENV, timeout=60)
    if result.returncode != 0:
        raise RuntimeError_(f"{argv[0]} {argv[1]}: {result.stderr.strip()[-400:]}")


def tools_missing() -> list[str]:
    return [tool for tool in ("mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]


def disk_template(cache: Path, disk_mb: int, id_base: int) -> Path:
    """A formatted, empty disk of disk_mb (made once per size, copied sparse per sandbox)."""
    template = cache / f"ext4-4k-{disk_mb}m-{id_base}.img"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    tmp = template.with_name(f".{template.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        with open(tmp, "wb") as fh:
            fh.truncate(disk_mb * 1024 * 1024)
        # No journal (a sandbox does not outlive a crash), no reserved blocks, root owned by
        # the sandbox's root so the overlay's upper directory can be its /.
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-b",
            "4096",  # the loop device's block size (direct I/O needs them to agree)
            "-O",
            "^has_journal",
            "-E",
            f"lazy_itable_init=1,nodiscard,root_owner={id_base}:{id_base}",
            str(tmp),
        )
        os.replace(tmp, template)
    finally:
        tmp.unlink(missing_ok=True)
    return template


def create(
    base: Path,
    lower: Path | str,
    rootfs: Path,
    *,
    disk_mb: int,
    id_base: int,
    template_cache: Path,
    mounts: Sequence[VolumeMount] = (),
    restore: Callable[[Path], None] | None = None,
) -> Path:
    """Make and mount the sandbox's disk and root overlay; return the root's host path.
    `lower` is the image, or a colon list of template layers over it (topmost first)."""
    if disk_mb < MIN_DISK_MB:
        raise RuntimeError_(f"disk_mb must be at least {MIN_DISK_MB}", code="invalid_request")
    image = base / "disk.img"
    disk = base / "disk"
    template = disk_template(template_cache, disk_mb, id_base)
    _sparse_copy(template, image)
    disk.mkdir(exist_ok=True)
    rootfs.mkdir(parents=True, exist_ok=True)
    _mount_loop(image, disk)
    for sub in ("upper", "work"):
        (disk / sub).mkdir(exist_ok=True)
    os.chown(disk / "upper", id_base, id_base)
    (disk / "upper").chmod(0o755)
    if restore is not None:
        restore(disk / "upper")  # a snapshot's layer, before the overlay is mounted on it
    options = f"lowerdir={lower},upperdir={disk / 'upper'},workdir={disk / 'work'}"
    _mount("overlay", rootfs, "overlay", MS_NODEV, options)
    for volume in mounts:
        bind_volume(rootfs, volume, id_base)
    return rootfs


def _mount_loop(image: Path, target: Path) -> None:
    """Attach `image` to a free loop device with direct I/O and autoclear (LOOP_CONFIGURE),
    and mount its ext4 on `target`; the device goes away with the last unmount.

    Direct I/O keeps the host from caching every written page twice (upper file and
    image file), both charged to the sandbox's memory limit. One ioctl instead of a
    `mount -o loop` process plus a later `losetup --direct-io` saves tens of milliseconds
    of each create."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _attempt in range(20):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                info = struct.pack(
                    "5Q4I64s64s32s2Q",
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO,
                    b"",
                    b"",
                    b"",
                    0,
                    0,
                )
                config = struct.pack("II", backing, 4096) + info + bytes(64)
                try:
                    fcntl.ioctl(loop, LOOP_CONFIGURE, config)
                except OSError as exc:
                    os.close(loop)
                    if exc.errno == errno.EBUSY:
                        continue  # another process took it between GET_FREE and now
                    if exc.errno == errno.EINVAL:  # no direct I/O on this file system
                        loop = _configure_cached(device, backing)
                    else:
                        raise RuntimeError_(f"attaching {image.name} to {device}: {exc}") from exc
                try:
                    _mount(device, target, "ext4", MS_NODEV | MS_NOSUID, "discard")
                finally:
                    os.close(loop)  # autoclear: the mount holds the device from here on
                return
            raise RuntimeError_("no free loop device (all taken while we looked)")
        finally:
            os.close(control)
    finally:
        os.close(backing)


def _configure_cached(device: str, backing: int) -> int:
    loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    info = struct.pack(
        "5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0
    )
    fcntl.ioctl(loop, LOOP_CONFIGURE, struct.pack("II", backing, 0) + info + bytes(64))
    return loop


def _mount(source: str, target: Path, fstype: str, flags: int, options: str) -> None:
    """mount(2) directly: an overlay mount costs ~0.1 ms, a `mount` process ten times more."""
    result = _libc.mount(
        source.encode(), str(target).encode(), fstype.encode(), flags, options.encode()
    )
    if result != 0:
        err = ctypes.get_errno()
        raise RuntimeError_(f"mount {fstype} on {target}: {os.strerror(err)}")


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy only the data extents of a sparse file (the holes stay holes)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        dst.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src_off, dst_off = start, start
            while src_off < end:
                copied = os.copy_file_range(
                    src.fileno(), dst.fileno(), end - src_off, src_off, dst_off
                )
                if copied <= 0:
                    raise RuntimeError_("copying the disk template failed")
                src_off += copied
                dst_off += copied
            offset = end


def bind_volume(rootfs: Path, volume: VolumeMount, id_base: int) -> None:
    """Bind `volume.source` at `volume.target` inside rootfs (before the sandbox runs, so
    nothing inside can swap the path for a symlink meanwhile)."""
    target = volume.target
    if not target.startswith("/") or ".." in target.split("/") or target.rstrip("/") == "":
        raise RuntimeError_(
            f"volume target {target!r} must be an absolute path below /", code="invalid_request"
        )
    if not Path(volume.source).is_dir():
        raise RuntimeError_(f"volume source {volume.source} is not a directory")
    host = rootfs / target.strip("/")
    current = rootfs
    for part in target.strip("/").split("/"):
        current = current / part
        if current.is_symlink():
            raise RuntimeError_(
                f"volume target {target!r} passes through a symlink in the sandbox",
                code="invalid_request",
            )
        if not current.exists():
            current.mkdir()
            os.chown(current, id_base, id_base)
    if os.path.realpath(host) != str(host):
        raise RuntimeError_(f"volume target {target!r} is not a plain directory")
    options = "bind,ro" if volume.read_only else "bind"
    _run("mount", "-o", f"{options},nosuid,nodev", str(volume.source), str(host))
    if volume.read_only:  # older util-linux binds first and remounts read-only separately
        _run("mount", "-o", "remount,bind,ro,nosuid,nodev", str(host))


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


def destroy(base: Path, rootfs: Path) -> None:
    """Unmount the root (volumes first) and the disk, remove the mount point; idempotent."""
    for attempt in range(100):
        points = _mounts_under(rootfs) + _mounts_under(base / "disk")
        if not points:
            break
        flags = 0 if attempt < 80 else MNT_DETACH
        for point in points:  # deepest first
            _libc.umount2(point.encode(), flags)
        if _mounts_under(rootfs) or _mounts_under(base / "disk"):
            time.sleep(0.01)  # busy for a moment while the sandbox's last process exits
    try:
        rootfs.rmdir()
    except OSError:
        pass


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)
