"""A file tree under a root directory: the files API shared by sandboxes and volumes.

A FileTree is a real directory shown to users under a prefix: a sandbox's
workspace as `/workspace/...`, a volume as `/...`. Every path goes through
console.runtime.files.to_host, which refuses escapes (`..`, symlinks leading out).
Writes land in a temporary file in the target's directory and are renamed into
place, so a reader never sees half a file and a refused or failed write (too big,
over the volume's quota, disk full) leaves nothing behind.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from django.conf import settings
from django.http import FileResponse

from console.runtime import files as paths
from console.runtime.base import FileEntry, FileMissing, RuntimeError_

COPY_CHUNK = 1024 * 1024
# JSON reads carry the whole file in one response; bigger files go through raw bytes.
MAX_TEXT_READ_BYTES = 32 * 1024 * 1024
# Content search skips files larger than this and stops after this many matches.
MAX_GREP_FILE_BYTES = 16 * 1024 * 1024
MAX_MATCHES = 2000
MAX_NAME_RESULTS = 10000
MAX_LIST_ENTRIES = 100_000
# The temporary names of write_chunks (mkstemp(prefix=".<name>.", suffix=".partial")).
PARTIAL_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.partial$")


class FileOpError(RuntimeError_):
    """A refused file operation; `code` is the API error code."""


class QuotaExceeded(FileOpError):
    code = "volume_quota_exceeded"


def entry_dict(entry: FileEntry) -> dict[str, Any]:
    """FileInfo exactly as the contract's STRICT shape."""
    data = dict(vars(entry))  # flat fields: a shallow copy (asdict deep-copies, 10x slower)
    data["mode"] = f"{entry.mode & 0o7777:04o}"
    return data


def byte_response(handle: BinaryIO, **kwargs: Any) -> FileResponse:
    """A streamed file answer read in 1 MiB blocks (Django's default 4 KiB block made a
    200 MiB download 51,200 ASGI messages)."""
    response = FileResponse(handle, **kwargs)
    response.block_size = COPY_CHUNK
    return response


class Readable(Protocol):
    """A byte source: an open file, or an HttpRequest's body."""

    def read(self, size: int = ..., /) -> bytes: ...


def iter_stream(stream: Readable, size: int = COPY_CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def parse_permissions(value: Any) -> int:
    text = str(value).strip().lower().removeprefix("0o") if isinstance(value, (str, int)) else ""
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise FileOpError(
            f'`permissions` must be octal like "0644" or "755" (got {value!r})',
            code="invalid_request",
        )
    return int(text, 8)


def _compile(pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    try:
        return re.compile(pattern)
    except re.error:
        # Not a valid regular expression: search for the literal text.
        return re.compile(re.escape(pattern))


def _walk_files(start: Path) -> Iterator[Path]:
    """Regular files under `start`, never following symlinks (they may lead out)."""
    if start.is_file() and not start.is_symlink():
        yield start
        return
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            candidate = Path(dirpath, name)
            if not candidate.is_symlink() and candidate.is_file():
                yield candidate


@dataclass(frozen=True)
class FileTree:
    """The files of one sandbox workspace or one volume.

    `space_left`, when given, answers how many more bytes the tree may hold (a
    volume's quota on a backend where the kernel does not enforce it); writes stop
    past it. Where the kernel enforces a size (a volume's own file system) ENOSPC
    is turned into the same `volume_quota_exceeded` refusal.
    """

    root: Path  # the real directory, symlinks resolved
    prefix: str = paths.WORKSPACE
    max_file_bytes: int | None = None
    space_left: Callable[[], int] | None = None
    full_code: str = "file_too_large"  # what ENOSPC means to the user

    # --- paths ---------------------------------------------------------------------
    def normalize(self, path: Any, field: str = "path") -> str:
        """A tree path from user input; `/` means the tree's root (the CLI's list default)."""
        if not isinstance(path, str) or not path.strip():
            raise FileOpError(f"`{field}` must be a non-empty string", code="invalid_request")
        if "\x00" in path:
            raise FileOpError(f"`{field}` must not contain NUL bytes", code="invalid_request")
        path = path.strip()
        return self.prefix if path == "/" else path

    def resolve(
        self, path: Any, *, must_exist: bool = False, field: str = "path", follow: bool = True
    ) -> Path:
        spath = self.normalize(path, field)
        host = paths.to_host(self.root, spath, follow_symlinks=follow, prefix=self.prefix)
        if must_exist and not os.path.lexists(host):
            raise FileMissing(f"{paths.sandbox_path(spath, self.prefix)} does not exist")
        return host

    def resolve_link(self, path: Any, *, field: str = "path") -> Path:
        """Like resolve, but a final symlink is not followed (remove or move the link itself)."""
        return self.resolve(path, field=field, follow=False)

    def display(self, host: Path) -> str:
        """The tree path of a real path under the root."""
        rel = os.path.relpath(host, self.root)
        if rel == ".":
            return self.prefix
        return f"{self.prefix.rstrip('/')}/{rel}"

    # --- reading -------------------------------------------------------------------
    def info(self, path: Any) -> dict[str, Any]:
        host = self.resolve_link(path)
        return entry_dict(paths.entry(host, self.display(host)))

    def listing(self, path: Any, depth: int = 1) -> list[dict[str, Any]]:
        host = self.resolve(path)
        entries = paths.listing(
            self.root, host, max(1, int(depth)), self.prefix, limit=MAX_LIST_ENTRIES + 1
        )
        if len(entries) > MAX_LIST_ENTRIES:
            raise FileOpError(
                f"{path} holds more than {MAX_LIST_ENTRIES} entries at this depth; "
                "list a subdirectory or a smaller depth",
                code="invalid_request",
            )
        return [entry_dict(e) for e in entries]

    def exists(self, path: Any) -> bool:
        return os.path.lexists(self.resolve_link(path))

    def existing_file(self, path: Any) -> Path:
        host = self.resolve(path, must_exist=True)
        if host.is_dir():
            raise FileOpError(f"{path} is a directory, not a file", code="invalid_request")
        if not host.is_file():
            raise FileMissing(f"{path} does not exist")
        return host

    def read_text(self, path: Any) -> str:
        host = self.existing_file(path)
        if host.stat().st_size > MAX_TEXT_READ_BYTES:
            raise FileOpError(
                f"{path} is larger than {MAX_TEXT_READ_BYTES} bytes; download it as raw bytes",
                code="file_too_large",
            )
        try:
            return host.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise FileOpError(
                f"{path} holds binary (non-UTF-8) content; read it with encoding base64 "
                "or download it as raw bytes",
                code="invalid_request",
            ) from None

    # --- writing -------------------------------------------------------------------
    def _full(self, what: str) -> FileOpError:
        if self.full_code == QuotaExceeded.code:
            return QuotaExceeded(f"{what} does not fit: the volume is full (its size quota)")
        return FileOpError(f"{what} does not fit: the disk is full", code=self.full_code)

    def write_chunks(
        self, path: Any, chunks: Iterable[bytes], *, limit: int | None = None, mode: int = 0o644
    ) -> Path:
        """Stream `chunks` into the file at `path` atomically, refusing more than `limit` bytes."""
        target = self.resolve(path)
        staged = self.stage(target, chunks, limit=limit, mode=mode)
        try:
            os.replace(staged, target)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise self.os_error(exc, str(path)) from None
        return target

    def stage(
        self, target: Path, chunks: Iterable[bytes], *, limit: int | None = None, mode: int = 0o644
    ) -> Path:
        """Write `chunks` into a hidden temporary file beside `target` (a real path from
        resolve) and return it; the caller renames it into place or unlinks it. Nothing is
        left behind when a limit, the quota or the disk stops the write."""
        limit = limit if limit is not None else (self.max_file_bytes or settings.MAX_FILE_BYTES)
        shown = self.display(target)
        if target.is_dir():
            raise FileOpError(f"{shown} is a directory; give a file path", code="invalid_request")
        self.make_parents(target)
        mode = (target.stat().st_mode & 0o7777) if target.is_file() else mode
        room = self.space_left() if self.space_left is not None else None
        if room is not None and target.is_file():
            room += target.stat().st_size  # the old content goes away with the rename
        try:
            fd, tmp_name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
            )
        except OSError as exc:
            raise self.os_error(exc, shown) from None
        try:
            written = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    written += len(chunk)
                    if written > limit:
                        raise FileOpError(
                            f"{shown} is larger than the {limit}-byte file limit",
                            code="file_too_large",
                        )
                    if room is not None and written > room:
                        raise self._full(shown)
                    out.write(chunk)
            os.chmod(tmp_name, mode)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise self.os_error(exc, shown) from None
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return Path(tmp_name)

    def os_error(self, exc: OSError, what: str) -> OSError | FileOpError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return self._full(what)
        return exc

    def make_parents(self, target: Path) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.os_error(exc, self.display(target)) from None

    def mkdir(self, path: Any) -> None:
        host = self.resolve(path)
        if host.exists() and not host.is_dir():
            raise FileOpError(f"{path} exists and is not a directory", code="invalid_request")
        try:
            host.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.os_error(exc, str(path)) from None

    def remove(self, path: Any) -> None:
        host = self.resolve_link(path)
        if host == self.root:
            raise FileOpError(f"refusing to remove {self.prefix} itself", code="invalid_request")
        if not os.path.lexists(host):
            raise FileMissing(f"{path} does not exist")
        if host.is_dir() and not host.is_symlink():
            shutil.rmtree(host)
        else:
            host.unlink()

    def rename(self, old_path: Any, new_path: Any) -> dict[str, Any]:
        old = self.resolve_link(old_path, field="old_path")
        if not os.path.lexists(old):
            raise FileMissing(f"{old_path} does not exist")
        new = self.resolve(new_path, field="new_path")
        if old == self.root:
            raise FileOpError(f"refusing to move {self.prefix} itself", code="invalid_request")
        if old.is_dir() and (new == old or old in new.parents):
            raise FileOpError("cannot move a directory into itself", code="invalid_request")
        self.make_parents(new)
        try:
            os.replace(old, new)
        except OSError as exc:
            raise FileOpError(
                f"cannot move {old_path} to {new_path}: {exc.strerror}", code="invalid_request"
            ) from None
        return self.info(self.display(new))

    def chmod(self, path: Any, permissions: Any) -> None:
        os.chmod(self.resolve(path, must_exist=True), parse_permissions(permissions))

    # --- search and replace ----------------------------------------------------------
    def find_content(self, path: Any, pattern: Any) -> list[dict[str, Any]]:
        """Lines matching `pattern` (regex, or literal text when not a valid regex)."""
        regex = _compile(pattern)
        start = self.resolve(path, must_exist=True)
        matches: list[dict[str, Any]] = []
        for file in _walk_files(start):
            if file.stat().st_size > MAX_GREP_FILE_BYTES:
                continue
            with file.open("rb") as handle:
                if b"\x00" in handle.read(8192):
                    continue  # binary
                handle.seek(0)
                for number, raw in enumerate(handle, start=1):
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    if regex.search(line):
                        matches.append(
                            {"file": self.display(file), "line": number, "content": line}
                        )
                        if len(matches) >= MAX_MATCHES:
                            return matches
        return matches

    def find_names(self, path: Any, pattern: Any) -> list[str]:
        """Tree paths whose name (or path below `path`, when the glob has a `/`) matches."""
        if not isinstance(pattern, str) or not pattern:
            raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
        start = self.resolve(path, must_exist=True)
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = Path(dirpath, name)
                subject = os.path.relpath(full, start) if "/" in pattern else name
                if fnmatch.fnmatchcase(subject, pattern):
                    found.append(self.display(full))
                    if len(found) >= MAX_NAME_RESULTS:
                        return found
        return found

    def replace(
        self, files: Any, pattern: Any, replacement: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Replace every literal occurrence of `pattern` in each file; atomic per file.

        Binary files are skipped and counted; with dry_run nothing is written.
        """
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise FileOpError("`files` must be a non-empty list of paths", code="invalid_request")
        if not isinstance(pattern, str) or not pattern:
            raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
        if not isinstance(replacement, str):
            raise FileOpError("`replacement` must be a string", code="invalid_request")
        total = modified = skipped = binary = 0
        for path in files:
            host = self.existing_file(path)
            if host.stat().st_size > MAX_TEXT_READ_BYTES:
                raise FileOpError(f"{path} is too large to edit in place", code="file_too_large")
            data = host.read_bytes()
            try:
                if b"\x00" in data:  # binary, as find_content judges it
                    raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                binary += 1
                continue
            count = text.count(pattern)
            if not count:
                skipped += 1
                continue
            if not dry_run:
                self.write_chunks(path, [text.replace(pattern, replacement).encode("utf-8")])
            total += count
            modified += 1
        return {
            "dry_run": bool(dry_run),
            "replacements": total,
            "files_modified": modified,
            "files_skipped": skipped,
            "binary_files_skipped": binary,
        }

    # --- archives ------------------------------------------------------------------
    def tar_directory(self, path: Any) -> BinaryIO:
        """An uncompressed tar of a directory (symlinks kept as links), as an unlinked temp file.

        Member names are relative to the directory, never absolute, never with `..`.
        """
        host = self.resolve(path, must_exist=True)
        if not host.is_dir():
            raise FileOpError(f"{path} is not a directory", code="invalid_request")
        handle = tempfile.TemporaryFile(dir=settings.DATA_DIR)
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for dirpath, dirnames, filenames in os.walk(host, followlinks=False):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = Path(dirpath, name)
                    if PARTIAL_NAME.match(name):
                        continue  # a write in progress
                    tar.add(full, arcname=os.path.relpath(full, host), recursive=False)
        handle.seek(0)
        return handle

    def base_name(self, host: Path) -> str:
        return posixpath.basename(self.display(host).rstrip("/")) or "root"
