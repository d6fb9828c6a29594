"""Files inside a sandbox: the domain layer behind /v1 files and the console's file browser.

Everything goes through the runtime's file store (`get_driver().files(...)`), which
resolves paths inside the sandbox's own root and cannot reach the host; this module
never touches a host path. Paths may be anywhere in the sandbox: relative ones are
taken from the cwd the sandbox was created with, else from the user's home when `user`
is given, else from /workspace. `user`
decides who owns what is created; an overwrite without a user keeps the file's mode
and owner. Writes stream into a temporary file beside the target that is renamed into
place, so a reader never sees half a file and a refused write leaves nothing behind.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from django.conf import settings

from console.runtime import get_driver
from console.runtime.base import FileEntry, FileMissing, FileStore, RuntimeError_

WORKSPACE = "/workspace"
COPY_CHUNK = 1024 * 1024
# JSON reads carry the whole file in one response; bigger files go through GET /file.
MAX_TEXT_READ_BYTES = 32 * 1024 * 1024
# Content search skips files larger than this and stops after this many matches.
MAX_GREP_FILE_BYTES = 16 * 1024 * 1024
MAX_MATCHES = 2000
MAX_NAME_RESULTS = 10000
MAX_WALK_ENTRIES = 200_000


class FileOpError(RuntimeError_):
    """A refused file operation; `code` is the API error code."""


# Whose files: a sandbox's runtime id, or a file store of its own (a volume's,
# console/volumes/files.py), so one set of functions serves both.
Owner = str | FileStore


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FileOpError(f"`{field}` must be a non-empty string", code="invalid_request")
    if "\x00" in value:
        raise FileOpError(f"`{field}` must not contain NUL bytes", code="invalid_request")
    return value.strip()


def user_of(value: Any) -> str | None:
    """The request's `user` (null or empty: none named)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}\$?", value):
        raise FileOpError("`user` must be a user name of the sandbox", code="invalid_request")
    return value


def store(sandbox_id: Owner) -> FileStore:
    """A sandbox's file store by its runtime id; a store given as is (a volume's,
    console/volumes/files.py), so every function here serves volumes too."""
    if isinstance(sandbox_id, FileStore):
        return sandbox_id
    return get_driver().files(sandbox_id)


def locate(sandbox_id: Owner, path: Any, user: str | None = None, field: str = "path") -> str:
    """The absolute sandbox path for a request's path."""
    return store(sandbox_id).path(_text(path, field), user=user)


def entry_dict(entry: FileEntry) -> dict[str, Any]:
    """FileInfo exactly as the contract's STRICT shape."""
    data = asdict(entry)
    data["mode"] = f"{entry.mode & 0o7777:04o}"
    return data


def info(sandbox_id: Owner, path: Any, user: str | None = None) -> dict[str, Any]:
    files = store(sandbox_id)
    return entry_dict(files.stat(files.path(_text(path, "path"), user=user)))


def listing(
    sandbox_id: Owner, path: Any, depth: int = 1, user: str | None = None
) -> list[dict[str, Any]]:
    files = store(sandbox_id)
    return [entry_dict(e) for e in files.list(files.path(_text(path, "path"), user=user), depth)]


def exists(sandbox_id: Owner, path: Any, user: str | None = None) -> bool:
    files = store(sandbox_id)
    return files.exists(files.path(_text(path, "path"), user=user))


def is_dir(sandbox_id: Owner, path: Any, user: str | None = None) -> bool:
    files = store(sandbox_id)
    return files.is_dir(files.path(_text(path, "path"), user=user))


def open_file(sandbox_id: Owner, path: Any, user: str | None = None) -> BinaryIO:
    """An open regular file for reading (a directory or missing path is refused)."""
    files = store(sandbox_id)
    return files.open_read(files.path(_text(path, "path"), user=user))


def read_text(sandbox_id: Owner, path: Any, user: str | None = None) -> str:
    with open_file(sandbox_id, path, user) as handle:
        data = handle.read(MAX_TEXT_READ_BYTES + 1)
    if len(data) > MAX_TEXT_READ_BYTES:
        raise FileOpError(
            f"{path} is larger than {MAX_TEXT_READ_BYTES} bytes; download it as raw bytes "
            "(GET /file, or `nullspace sandbox file read --encoding base64`)",
            code="file_too_large",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileOpError(
            f"{path} holds binary (non-UTF-8) content; read it with encoding base64 "
            "(`nullspace sandbox file read --encoding base64`, or GET /file for raw bytes)",
            code="invalid_request",
        ) from None


def read_bytes(sandbox_id: Owner, path: Any, user: str | None = None) -> bytes:
    with open_file(sandbox_id, path, user) as handle:
        data = handle.read(settings.MAX_FILE_BYTES + 1)
    if len(data) > settings.MAX_FILE_BYTES:
        raise FileOpError(f"{path} is larger than the file limit", code="file_too_large")
    return data


def write_chunks(
    sandbox_id: Owner,
    path: Any,
    chunks: Iterable[bytes],
    *,
    limit: int | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Stream `chunks` into the file at `path` atomically; its FileInfo."""
    files = store(sandbox_id)
    target = files.path(_text(path, "path"), user=user)
    limit = settings.MAX_FILE_BYTES if limit is None else limit
    return entry_dict(files.write(target, chunks, limit=limit, user=user))


class Readable(Protocol):
    """A body to stream from: an open file, or a request (its read() reads the body)."""

    def read(self, n: int = -1, /) -> bytes: ...


def iter_stream(stream: Readable, size: int = COPY_CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def mkdir(sandbox_id: Owner, path: Any, user: str | None = None) -> None:
    files = store(sandbox_id)
    files.mkdir(files.path(_text(path, "path"), user=user), user=user)


def remove(sandbox_id: Owner, path: Any, user: str | None = None) -> None:
    files = store(sandbox_id)
    target = files.path(_text(path, "path"), user=user)
    if target in ("/", WORKSPACE):
        raise FileOpError(f"refusing to remove {target} itself", code="invalid_request")
    files.remove(target)


def rename(
    sandbox_id: Owner, old_path: Any, new_path: Any, user: str | None = None
) -> dict[str, Any]:
    files = store(sandbox_id)
    old = files.path(_text(old_path, "old_path"), user=user)
    new = files.path(_text(new_path, "new_path"), user=user)
    if old in ("/", WORKSPACE):
        raise FileOpError(f"refusing to move {old} itself", code="invalid_request")
    if not files.exists(old):
        raise FileMissing(f"{old_path} does not exist")
    if files.is_dir(old) and (new == old or new.startswith(old.rstrip("/") + "/")):
        raise FileOpError("cannot move a directory into itself", code="invalid_request")
    return entry_dict(files.rename(old, new, user=user))


def parse_permissions(value: Any) -> int:
    text = str(value).strip().lower().removeprefix("0o") if isinstance(value, (str, int)) else ""
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise FileOpError(
            f'`permissions` must be octal like "0644" or "755" (got {value!r})',
            code="invalid_request",
        )
    return int(text, 8)


def chmod(sandbox_id: Owner, path: Any, permissions: Any, user: str | None = None) -> None:
    mode = parse_permissions(permissions)
    files = store(sandbox_id)
    files.chmod(files.path(_text(path, "path"), user=user), mode)


def _regular_files(files: FileStore, start: str) -> Iterator[str]:
    """Regular files at and below `start`, never following symlinks (bounded)."""
    for count, (spath, entry) in enumerate(files.walk(start)):
        if count >= MAX_WALK_ENTRIES:
            return
        if entry.type == "file":
            yield spath


def _compile(pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    try:
        return re.compile(pattern)
    except re.error:
        # Not a valid regular expression: search for the literal text.
        return re.compile(re.escape(pattern))


def find_content(
    sandbox_id: Owner, path: Any, pattern: Any, user: str | None = None
) -> list[dict[str, Any]]:
    """Lines matching `pattern` (regex, or literal text when not a valid regex) as SearchMatch."""
    regex = _compile(pattern)
    files = store(sandbox_id)
    start = files.path(_text(path, "path"), user=user)
    if not files.exists(start):
        raise FileMissing(f"{path} does not exist")
    matches: list[dict[str, Any]] = []
    for spath in _regular_files(files, start):
        try:
            handle = files.open_read(spath)
        except (RuntimeError_, OSError):
            continue
        with handle:
            head = handle.read(8192)
            if b"\x00" in head:
                continue  # binary
            handle.seek(0, 2)
            if handle.tell() > MAX_GREP_FILE_BYTES:
                continue
            handle.seek(0)
            for number, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if regex.search(line):
                    matches.append({"file": spath, "line": number, "content": line})
                    if len(matches) >= MAX_MATCHES:
                        return matches
    return matches


def find_names(sandbox_id: Owner, path: Any, pattern: Any, user: str | None = None) -> list[str]:
    """Sandbox paths whose name (or path below `path`, when the glob has a `/`) matches the glob."""
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    files = store(sandbox_id)
    start = files.path(_text(path, "path"), user=user)
    if not files.is_dir(start):
        raise (
            FileMissing(f"{path} is not a directory")
            if not files.exists(start)
            else FileOpError(f"{path} is not a directory", code="invalid_request")
        )
    found: list[str] = []
    for count, (spath, _entry) in enumerate(files.walk(start)):
        if count >= MAX_WALK_ENTRIES:
            break
        subject = posixpath.relpath(spath, start) if "/" in pattern else posixpath.basename(spath)
        if fnmatch.fnmatchcase(subject, pattern):
            found.append(spath)
            if len(found) >= MAX_NAME_RESULTS:
                break
    return found


def replace(
    sandbox_id: Owner,
    files_: Any,
    pattern: Any,
    replacement: Any,
    user: str | None = None,
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Replace every literal occurrence of `pattern` in each file; atomic per file. Binary
    files (a NUL byte, or not UTF-8) are skipped and counted; dry_run writes nothing."""
    if not isinstance(files_, list) or not files_ or not all(isinstance(f, str) for f in files_):
        raise FileOpError("`files` must be a non-empty list of paths", code="invalid_request")
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    if not isinstance(replacement, str):
        raise FileOpError("`replacement` must be a string", code="invalid_request")
    total = modified = skipped = binary = 0
    for path in files_:
        data = read_bytes(sandbox_id, path, user)
        try:
            if b"\x00" in data:
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
            write_chunks(sandbox_id, path, [text.replace(pattern, replacement).encode("utf-8")])
        total += count
        modified += 1
    return {
        "dry_run": bool(dry_run),
        "replacements": total,
        "files_modified": modified,
        "files_skipped": skipped,
        "binary_files_skipped": binary,
    }


def tar_directory(sandbox_id: Owner, path: Any, user: str | None = None) -> BinaryIO:
    """An uncompressed tar of a directory (symlinks kept as links), as an unlinked temp file."""
    files = store(sandbox_id)
    start = files.path(_text(path, "path"), user=user)
    if not files.is_dir(start):
        raise FileOpError(f"{path} is not a directory", code="invalid_request")
    handle = tempfile.TemporaryFile(dir=settings.DATA_DIR)
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for spath, entry in files.walk(start):
            if spath == start:
                continue
            item = tarfile.TarInfo(posixpath.relpath(spath, start))
            item.mode = entry.mode
            item.mtime = int(_mtime(entry))
            if entry.type == "dir":
                item.type = tarfile.DIRTYPE
                tar.addfile(item)
            elif entry.type == "symlink":
                item.type = tarfile.SYMTYPE
                item.linkname = entry.symlink_target or ""
                tar.addfile(item)
            elif entry.type == "file":
                try:
                    source = files.open_read(spath)
                except (RuntimeError_, OSError):
                    continue
                with source:
                    source.seek(0, 2)
                    item.size = source.tell()
                    source.seek(0)
                    tar.addfile(item, source)
    handle.seek(0)
    return handle


def _mtime(entry: FileEntry) -> float:
    return datetime.fromisoformat(entry.modified_time.replace("Z", "+00:00")).timestamp()
