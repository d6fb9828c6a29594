"""A volume's files as a runtime FileStore, so the sandbox files layer (console/sandboxes/files.py,
uploads, extraction, watches) serves volumes unchanged.

It is the runtime's LocalFileStore on the volume's root (openat2 RESOLVE_IN_ROOT: `..` and
symlinks resolve inside the volume), with two differences: what the API creates belongs
to the sandboxes' default user (uid 1000 inside, shifted by RUNTIME_ID_BASE on the host),
so every sandbox that mounts the volume can change it; and writes are held to the
volume's quota (`volume_quota_exceeded`), whether the store counts it or the kernel
reports the volume's own file system full.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from typing import Any

from console.runtime.base import FileEntry, RuntimeError_
from console.runtime.filestore import Account, LocalFileStore
from console.runtime.image import DEFAULT_UID, DEFAULT_USER


class QuotaExceeded(RuntimeError_):
    code = "volume_quota_exceeded"


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
