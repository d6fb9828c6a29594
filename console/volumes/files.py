"""A volume's files as a runtime FileStore, so the sandbox files layer (console/sandboxes/files.py,
uploads, extraction, watches) serves volumes unchanged.

It is the runtime's LocalFileStore on the volume's root (openat2 RESOLVE_IN_ROOT: `..` and
symlinks resolve inside the volume), with two differences: what the API creates belongs
to the sandboxes' default user (uid 1000 inside, shifted by RUNTIME_ID_BASE on the host),
so every sandbox that mounts the volume can change it; and writes are held to the
volume's quota (`volume_quota_exceeded`), whether the store counts it or the kernel
reports the volume's own file system full.

An upload session into a volume stages its bytes in one hidden file at the volume's root,
allocated to its full size up front (so the quota counts it from the start) and written
part by part at each part's offset; completing is a rename (docs/volumes.md, "Uploads").
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from console.runtime.base import FileEntry, FileMissing, RuntimeError_
from console.runtime.filestore import Account, FileOpRefused, LocalFileStore
from console.runtime.image import DEFAULT_UID, DEFAULT_USER


class QuotaExceeded(RuntimeError_):
    code = "volume_quota_exceeded"


STAGING_PREFIX = "/.nullspace-upload-"
READ_BLOCK = 1024 * 1024


def staging_path(upload_id: str) -> str:
    """The hidden file an upload session stages into, at the volume's root."""
    return f"{STAGING_PREFIX}{upload_id}.partial"


class VolumeFileStore(LocalFileStore):
    def __init__(self, root: str, *, id_base: int, space_left: Callable[[], int]) -> None:
        super().__init__(root, id_base=id_base, cwd="/", default_user=DEFAULT_USER, prefix="/")
        self.space_left = space_left
        self._owner = Account(DEFAULT_USER, DEFAULT_UID, DEFAULT_UID, "/")

    def accounts(self) -> dict[str, Account]:
        return {DEFAULT_USER: self._owner}  # a volume has no /etc/passwd of its own

    def account(self, user: str | None) -> Account:
        return self._owner  # whoever is named, files belong to the sandboxes' user

    def _group_lines(self) -> list[str]:
        # No /etc/group to open per listed entry (a 10,000-file listing paid 10,000 misses).
        return [f"{DEFAULT_USER}:x:{DEFAULT_UID}:"]

    def own_root(self) -> None:
        """Give the (new) volume's root to the sandboxes' user."""
        if os.geteuid() == 0:
            os.chown(self.root, DEFAULT_UID + self.id_base, DEFAULT_UID + self.id_base)

    def write(
        self,
        path: str,
        chunks: Iterable[bytes],
        *,
        limit: int,
        user: str | None = None,
        mode: int | None = None,
    ) -> FileEntry:
        room = self.space_left()
        try:
            room += self.stat(path, follow=True).size  # the old content goes with the rename
        except RuntimeError_:
            pass
        try:
            return super().write(path, chunks, limit=min(limit, room), user=user, mode=mode)
        except RuntimeError_ as exc:
            over_room = exc.code == "file_too_large" and room < limit
            if exc.code == "disk_full" or over_room:
                raise QuotaExceeded(
                    f"{path} does not fit: the volume is full (its size quota)"
                ) from None
            raise

    def makedirs(self, path: str, *, user: str | None = None) -> None:
        try:
            super().makedirs(path, user=user)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise QuotaExceeded(f"{path} does not fit: the volume is full") from None
            raise

    def check_room(self, size: int, what: Any) -> None:
        """Refuse early a declared size that cannot fit."""
        room = self.space_left()
        if size > room:
            raise QuotaExceeded(f"{size} bytes do not fit in {what}: the volume has {room} left")

    # --- upload staging (console/sandboxes/uploads.py) ----------------------------------
    def create_staging(self, spath: str, size: int) -> None:
        """A new staging file holding `size` bytes of the volume (fallocate: the quota counts
        them now, and a session that cannot fit is refused before any part is sent)."""
        fd = self.open_fd(spath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if size:
                os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            self.discard_staging(spath)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise QuotaExceeded(f"{size} bytes do not fit: the volume is full") from None
            raise
        os.close(fd)

    def write_at(self, spath: str, offset: int, chunks: Iterable[bytes]) -> None:
        """Write `chunks` into the staging file from `offset` (parts land concurrently)."""
        fd = self.open_fd(spath, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(fd, view, offset)
                    offset += written
                    view = view[written:]
        finally:
            os.close(fd)

    def read_blocks(self, spath: str) -> Iterator[bytes]:
        fd = self.open_fd(spath, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            while block := os.read(fd, READ_BLOCK):
                yield block
        finally:
            os.close(fd)

    def publish_staging(self, spath: str, target: str, *, size: int) -> FileEntry:
        """Rename the staged file onto `target` (one rename: readers see the old file or the
        whole new one). It takes an overwritten file's mode and owner, else 0644 and the volume's
        user."""
        target = self._through_link(target)
        self._check_writable(target)
        fd = self.open_fd(spath, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if os.fstat(fd).st_size != size:
                raise FileOpRefused(f"the staged upload for {target} was changed; start again")
            try:
                old_fd = self.open_fd(target, os.O_PATH)
            except FileMissing:
                old = None
            else:
                old = os.fstat(old_fd)
                os.close(old_fd)
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise FileOpRefused(f"{target} is a directory; give a file path")
            if old is None:
                os.fchmod(fd, 0o644)
                self._chown_fd(fd, None)
            else:  # as files.write: an overwrite keeps the old file's mode and owner
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                if os.geteuid() == 0:
                    os.fchown(fd, old.st_uid, old.st_gid)
        finally:
            os.close(fd)
        self.makedirs(posixpath.dirname(target.rstrip("/")) or "/")
        src_parent, src_name = self._parent(spath)
        try:
            dst_parent, dst_name = self._parent(target)
        except BaseException:
            os.close(src_parent)
            raise
        try:
            os.rename(src_name, dst_name, src_dir_fd=src_parent, dst_dir_fd=dst_parent)
        finally:
            os.close(src_parent)
            os.close(dst_parent)
        return self.stat(target)

    def discard_staging(self, spath: str) -> None:
        try:
            self.remove(spath)
        except (FileMissing, OSError, RuntimeError_):
            pass  # already gone (or the volume with it)
