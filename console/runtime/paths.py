"""The path rules of sandbox files, in one place.

A sandbox path is absolute inside the sandbox (`/etc/hosts`, `/workspace/app.py`).
Relative paths are taken from a base directory: the sandbox's cwd, or the user's home
when a user is named. `..` is resolved like the kernel would, never above `/`.

Every file operation the host does on a sandbox's files opens them with openat2(2)
and RESOLVE_IN_ROOT against a descriptor of the sandbox's root: the kernel itself
resolves `..` and every symlink (absolute ones included) as if that root were `/`,
so no path, link or race can lead to the host's files. Operations then act on the
descriptors (or on one name within an opened parent directory), never on a host path.

A confined root (isolation off) is the sandbox's /workspace only: `ROOT_PREFIX` maps
sandbox paths to it and anything outside is refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import struct

from console.runtime.base import FileMissing, PathRefused

SYS_OPENAT2 = 437  # x86_64 and arm64 share this number
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(root_fd: int, relative: str, flags: int, mode: int = 0) -> int:
    """openat2(root_fd, relative, {flags, mode, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS})."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    path = (relative or ".").encode()
    fd = _libc.syscall(SYS_OPENAT2, root_fd, path, how, len(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), relative)
    return int(fd)


def available() -> bool:
    try:
        fd = openat2(os.open("/", os.O_PATH | os.O_CLOEXEC), ".", os.O_PATH)
    except OSError:
        return False
    os.close(fd)
    return True


def normalize(path: str | None, base: str) -> str:
    """An absolute, normalised sandbox path; relative paths are taken from `base`."""
    if path is None or not str(path).strip():
        return base
    path = str(path).strip()
    if "\0" in path:
        raise PathRefused("path contains a NUL byte")
    joined = posixpath.normpath(posixpath.join(base, path))
    # normpath keeps a leading `//`; `..` above `/` stays at `/`.
    return "/" + joined.lstrip("/")


def confine(spath: str, prefix: str) -> str:
    """The path relative to `prefix` (the root of a confined store), refusing the rest."""
    if spath == prefix:
        return "."
    if not spath.startswith(prefix.rstrip("/") + "/"):
        raise PathRefused(
            f"path {spath!r} is outside {prefix} (this sandbox runs without isolation, "
            f"so only {prefix} is reachable)"
        )
    return spath[len(prefix.rstrip("/")) + 1 :]


def split(relative: str) -> tuple[str, str]:
    """(parent, name) of a root-relative path; the root itself has no name."""
    parent, name = posixpath.split(relative.rstrip("/"))
    return parent or ".", name


def missing(spath: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileMissing(f"{spath} does not exist")
    if exc.errno == errno.ELOOP:
        return PathRefused(f"{spath}: too many levels of symbolic links")
    return exc
