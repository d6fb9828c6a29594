"""A sandbox's files, reached from the host without ever leaving the sandbox's root.

`LocalFileStore` is the local driver's file store (the interface is `FileStore` in
base.py). It holds a descriptor of the sandbox's root directory and opens everything
with openat2(RESOLVE_IN_ROOT) (paths.py), so symlinks, `..` and renames racing with
us resolve inside the sandbox. Names are mapped to the sandbox's own users through its
/etc/passwd and /etc/group, and owners are stored shifted by the sandbox's id base
(root inside = id_base on the host).
"""

from __future__ import annotations

import builtins
import errno
import os
import posixpath
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from console.runtime import paths
from console.runtime.base import FileEntry, FileMissing, FileStore, PathRefused, RuntimeError_

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()


class FileOpRefused(RuntimeError_):
    code = "invalid_request"


DEFAULT_CWD = "/workspace"  # a sandbox's cwd when its create named none


class LocalFileStore(FileStore):
    def __init__(
        self,
        root: str,
        *,
        id_base: int = 0,
        cwd: str = DEFAULT_CWD,
        default_user: str | None = None,
        prefix: str = "/",
        kernel_mounts: tuple[str, ...] = (),
    ) -> None:
        """`root` is the host directory that is the sandbox's `prefix` (`/` when isolated,
        `/workspace` for a confined store); `id_base` shifts owners (0: no user namespace).
        `kernel_mounts` are directories that the sandbox sees as file systems of its own
        (procfs, its /dev), mounted only inside it: from here a write there would land in
        the directory underneath, hidden from the sandbox, so writes there are refused."""
        self.root = root
        self.id_base = id_base
        self.cwd = cwd
        self.default_user = default_user
        self.prefix = prefix
        self.kernel_mounts = kernel_mounts
        self._accounts: dict[str, Account] | None = None

    # --- resolving -------------------------------------------------------------------
    def path(self, path: str | None, *, user: str | None = None) -> str:
        """The absolute sandbox path of `path`. A relative one starts at the sandbox's cwd
        when it was created with one of its own (whoever the user), else at the user's
        home when `user` is given, else at /workspace: what the client expects."""
        own_cwd = self.cwd != DEFAULT_CWD
        base = self.account(user).home if user and not own_cwd else self.cwd
        spath = paths.normalize(path, base)
        if self.prefix != "/":
            paths.confine(spath, self.prefix)
        return spath

    def _relative(self, spath: str) -> str:
        if self.prefix == "/":
            return spath.lstrip("/") or "."
        return paths.confine(spath, self.prefix)

    def _root_fd(self) -> int:
        try:
            return os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise RuntimeError_("the sandbox's files are not available", code="conflict") from exc

    def open_fd(self, spath: str, flags: int, mode: int = 0) -> int:
        root = self._root_fd()
        try:
            return paths.openat2(root, self._relative(spath), flags, mode)
        except OSError as exc:
            raise paths.missing(spath, exc) from None
        finally:
            os.close(root)

    def _check_writable(self, spath: str) -> None:
        for top in self.kernel_mounts:
            if spath == top or spath.startswith(top + "/"):
                raise FileOpRefused(
                    f"{spath} is in {top}, a kernel file system of the sandbox: the files API "
                    "cannot write there (use exec)"
                )

    def _parent(self, spath: str) -> tuple[int, str]:
        """An O_PATH descriptor of the parent directory and the last name of `spath`."""
        relative = self._relative(spath)
        parent, name = paths.split(relative)
        if not name or name in (".", ".."):
            raise PathRefused(f"{spath} names the root of the sandbox's files")
        fd = self.open_fd(self._join(parent), os.O_PATH | os.O_DIRECTORY)
        return fd, name

    def _join(self, relative: str) -> str:
        """The sandbox path of a root-relative path."""
        return self.prefix if relative in ("", ".") else posixpath.join(self.prefix, relative)

    def host_path(self, spath: str, *, follow: bool = True) -> str:
        """The real host path of an existing sandbox path (for watches and local tools)."""
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        fd = self.open_fd(spath, flags)
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    # --- users -----------------------------------------------------------------------
    def accounts(self) -> dict[str, Account]:
        if self._accounts is None:
            found: dict[str, Account] = {}
            groups: dict[str, list[int]] = {}
            try:
                for line in self._small_text("/etc/group").splitlines():
                    parts = line.split(":")
                    if len(parts) >= 4 and parts[2].isdigit():
                        for member in filter(None, parts[3].split(",")):
                            groups.setdefault(member, []).append(int(parts[2]))
                for line in self._small_text("/etc/passwd").splitlines():
                    parts = line.split(":")
                    if len(parts) >= 6 and parts[2].isdigit() and parts[3].isdigit():
                        name = parts[0]
                        found[name] = Account(
                            name,
                            int(parts[2]),
                            int(parts[3]),
                            parts[5] or "/",
                            tuple(groups.get(name, ())),
                        )
            except (FileMissing, OSError):
                pass
            self._accounts = found
        return self._accounts

    def _small_text(self, spath: str) -> str:
        if self.prefix != "/":
            return ""
        fd = self.open_fd(spath, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            return fh.read(1 << 20).decode("utf-8", "replace")

    def account(self, user: str | None) -> Account:
        name = user or self.default_user
        if self.prefix != "/":
            # Without isolation there are no sandbox users: everything is the server's.
            return Account(name or "root", os.getuid(), os.getgid(), self.cwd)
        if not name:
            return Account("root", 0, 0, self.cwd)
        known = self.accounts()
        if name in known:
            return known[name]
        raise FileOpRefused(f"user {name!r} does not exist in the sandbox")

    def _owner_name(self, host_id: int, kind: str) -> str:
        inside = host_id - self.id_base
        if kind == "user":
            for account in self.accounts().values():
                if account.uid == inside:
                    return account.name
        else:
            for line in self._group_lines():
                parts = line.split(":")
                if len(parts) >= 3 and parts[2] == str(inside):
                    return parts[0]
        return str(inside)

    def _group_lines(self) -> list[str]:
        try:
            return self._small_text("/etc/group").splitlines()
        except (FileMissing, OSError):
            return []

    def _chown_fd(self, fd: int, user: str | None) -> None:
        if self.prefix != "/" or (user is None and self.default_user is None):
            return
        account = self.account(user)
        if os.geteuid() == 0:
            os.chown(fd, account.uid + self.id_base, account.gid + self.id_base)

    # --- reading ---------------------------------------------------------------------
    def stat(self, path: str, *, follow: bool = False) -> FileEntry:
        spath = path
        fd = self.open_fd(spath, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
        try:
            st = os.stat(fd)
            target = None
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
        return self._entry(spath, st, target)

    def _entry(self, spath: str, st: os.stat_result, target: str | None) -> FileEntry:
        is_link = stat.S_ISLNK(st.st_mode)
        is_dir = stat.S_ISDIR(st.st_mode)
        return FileEntry(
            name=posixpath.basename(spath) or spath,
            path=spath,
            is_dir=is_dir,
            size=st.st_size,
            type="symlink" if is_link else ("dir" if is_dir else "file"),
            mode=stat.S_IMODE(st.st_mode),
            permissions=stat.filemode(st.st_mode),
            owner=self._owner_name(st.st_uid, "user"),
            group=self._owner_name(st.st_gid, "group"),
            modified_time=datetime.fromtimestamp(st.st_mtime, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            symlink_target=target,
        )

    def exists(self, path: str) -> bool:
        try:
            os.close(self.open_fd(path, os.O_PATH | os.O_NOFOLLOW))
        except FileMissing:
            return False
        return True

    def is_dir(self, path: str) -> bool:
        try:
            fd = self.open_fd(path, os.O_PATH)
        except FileMissing:
            return False
        try:
            return stat.S_ISDIR(os.stat(fd).st_mode)
        finally:
            os.close(fd)

    def list(self, path: str, depth: int = 1) -> builtins.list[FileEntry]:
        try:
            fd = self.open_fd(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                raise FileOpRefused(f"{path} is not a directory") from None
            raise
        except FileMissing:
            if self.exists(path):
                raise FileOpRefused(f"{path} is not a directory") from None
            raise
        out: builtins.list[FileEntry] = []
        self._list_fd(fd, path, max(1, depth), 1, out)
        return out

    def _list_fd(
        self, fd: int, spath: str, depth: int, level: int, out: builtins.list[FileEntry]
    ) -> None:
        try:
            names = sorted(os.listdir(fd))
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    target = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
                except OSError:
                    continue
                child = posixpath.join(spath, name)
                out.append(self._entry(child, st, target))
                if level < depth and stat.S_ISDIR(st.st_mode):
                    try:
                        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    except OSError:
                        continue
                    self._list_fd(sub, child, depth, level + 1, out)
        finally:
            os.close(fd)

    def open_read(self, path: str) -> BinaryIO:
        fd = self.open_fd(path, os.O_RDONLY | os.O_NONBLOCK)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise FileOpRefused(f"{path} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FileOpRefused(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def walk(self, path: str) -> Iterator[tuple[str, FileEntry]]:
        """Every entry at and below `path`, depth first, never following symlinks."""
        top = self.stat(path, follow=True)
        if not top.is_dir:
            yield path, top
            return
        fd = self.open_fd(path, os.O_RDONLY | os.O_DIRECTORY)
        for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=fd):
            dirnames.sort()
            base = path if dirpath == "." else posixpath.join(path, dirpath[2:])
            for name in sorted(dirnames + filenames):
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                    target = os.readlink(name, dir_fd=dirfd) if stat.S_ISLNK(st.st_mode) else None
                except OSError:
                    continue
                yield (
                    posixpath.join(base, name),
                    self._entry(posixpath.join(base, name), st, target),
                )
        os.close(fd)

    # --- writing ---------------------------------------------------------------------
    def makedirs(self, path: str, *, user: str | None = None) -> None:
        self._check_writable(path)
        relative = self._relative(path)
        if relative == ".":
            return
        parts = [p for p in relative.split("/") if p]
        for index in range(len(parts)):
            parent = self._join("/".join(parts[:index]) or ".")
            fd = self.open_fd(parent, os.O_PATH | os.O_DIRECTORY)
            try:
                try:
                    os.mkdir(parts[index], 0o755, dir_fd=fd)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise _write_error(path, exc) from None
                child = os.open(
                    parts[index], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd
                )
                try:
                    self._chown_fd(child, user)
                finally:
                    os.close(child)
            finally:
                os.close(fd)
        if not self.is_dir(path):
            raise FileOpRefused(f"{path} exists and is not a directory")

    def write(
        self,
        path: str,
        chunks: Iterable[bytes],
        *,
        limit: int,
        user: str | None = None,
        mode: int | None = None,
    ) -> FileEntry:
        """Stream into a temporary file beside `path`, then rename it into place. An
        overwrite keeps the old file's mode and owner unless a user is named. A symlink
        is written through (to its target, inside the root), like a shell would."""
        path = self._through_link(path)
        self._check_writable(path)
        parent_path = posixpath.dirname(path.rstrip("/")) or "/"
        self.makedirs(parent_path, user=user)
        parent, name = self._parent(path)
        try:
            try:
                old = os.stat(name, dir_fd=parent, follow_symlinks=True)
            except FileNotFoundError:
                old = None
            except OSError:
                old = None
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise FileOpRefused(f"{path} is a directory; give a file path")
            temp = f".{name[:100]}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
            fd = os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent
            )
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    written = 0
                    for chunk in chunks:
                        written += len(chunk)
                        if written > limit:
                            raise FileOpRefused(
                                f"{path} is larger than the {limit}-byte file limit",
                                code="file_too_large",
                            )
                        out.write(chunk)
                if old is not None and user is None:
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                    if os.geteuid() == 0:
                        os.fchown(fd, old.st_uid, old.st_gid)
                else:
                    os.fchmod(fd, 0o644 if mode is None else mode)
                    self._chown_fd(fd, user)
            except BaseException:
                os.close(fd)
                _quiet_unlink(temp, parent)
                raise
            os.close(fd)
            try:
                os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError as exc:
                _quiet_unlink(temp, parent)
                raise _write_error(path, exc) from None
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            os.close(parent)
        return self.stat(path)

    def _through_link(self, spath: str) -> str:
        """The sandbox path a final symlink leads to (spath itself when not a link)."""
        try:
            if self.stat(spath).type != "symlink":
                return spath
            real = self.host_path(spath)
        except FileMissing:
            return spath
        root = os.path.realpath(self.root)
        relative = os.path.relpath(real, root)
        if relative.startswith(".."):
            return spath
        return self._join(relative)

    def mkdir(self, path: str, *, user: str | None = None) -> None:
        if self.exists(path) and not self.is_dir(path):
            raise FileOpRefused(f"{path} exists and is not a directory")
        try:
            self.makedirs(path, user=user)
        except OSError as exc:
            raise _write_error(path, exc) from None

    def remove(self, path: str) -> None:
        self._check_writable(path)
        parent, name = self._parent(path)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            raise FileMissing(f"{path} does not exist") from None
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            os.close(parent)

    def rename(self, old: str, new: str, *, user: str | None = None) -> FileEntry:
        self._check_writable(old)
        self._check_writable(new)
        if new == old or new.startswith(old.rstrip("/") + "/"):
            if self.is_dir(old) and new != old:
                raise FileOpRefused("cannot move a directory into itself")
        self.makedirs(posixpath.dirname(new.rstrip("/")) or "/", user=user)
        src_parent, src_name = self._parent(old)
        try:
            dst_parent, dst_name = self._parent(new)
        except BaseException:
            os.close(src_parent)
            raise
        try:
            if self.is_dir(new) and not self.is_dir(old):
                raise FileOpRefused(f"cannot move a file onto the directory {new}")
            os.rename(src_name, dst_name, src_dir_fd=src_parent, dst_dir_fd=dst_parent)
        except FileNotFoundError:
            raise FileMissing(f"{old} does not exist") from None
        except OSError as exc:
            raise FileOpRefused(f"cannot move {old} to {new}: {exc.strerror}") from None
        finally:
            os.close(src_parent)
            os.close(dst_parent)
        return self.stat(new)

    def chmod(self, path: str, mode: int) -> None:
        self._check_writable(path)
        fd = self.open_fd(path, os.O_PATH)
        try:
            # chmod through the descriptor's /proc link: the file we resolved, nothing else.
            os.chmod(f"/proc/self/fd/{fd}", mode)
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            os.close(fd)

    def symlink(self, path: str, target: str, *, user: str | None = None) -> None:
        self._check_writable(path)
        parent, name = self._parent(path)
        try:
            os.symlink(target, name, dir_fd=parent)
            if os.geteuid() == 0 and self.prefix == "/" and (user or self.default_user):
                account = self.account(user)
                os.chown(
                    name,
                    account.uid + self.id_base,
                    account.gid + self.id_base,
                    dir_fd=parent,
                    follow_symlinks=False,
                )
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            os.close(parent)


def _quiet_unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _write_error(path: str, exc: OSError) -> Exception:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return RuntimeError_(f"no space left in the sandbox for {path}", code="disk_full")
    if exc.errno == errno.EROFS:
        # The client maps this code to its permission error (exit 5), docs/volumes.md.
        return RuntimeError_(f"{path} is on a read-only volume", code="volume_read_only")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileMissing(f"{path} does not exist")
    return FileOpRefused(f"{path}: {exc.strerror}")
