"""Files inside a sandbox's /workspace: the domain layer behind /v1 files and the console's file browser.

Every path goes through the runtime driver's `host_path`, which refuses escapes
(`..`, absolute paths elsewhere, symlinks leading out). Writes land in a temporary
file in the same directory and are renamed into place, so a reader never sees half
a file and a refused or failed write leaves nothing behind.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from console.runtime import get_driver
from console.runtime.base import FileEntry, FileMissing, RuntimeError_

WORKSPACE = "/workspace"
COPY_CHUNK = 1024 * 1024
# JSON reads carry the whole file in one response; bigger files go through GET /file.
MAX_TEXT_READ_BYTES = 32 * 1024 * 1024
# Content search skips files larger than this and stops after this many matches.
MAX_GREP_FILE_BYTES = 16 * 1024 * 1024
MAX_MATCHES = 2000
MAX_NAME_RESULTS = 10000


class FileOpError(RuntimeError_):
    """A refused file operation; `code` is the API error code."""


def normalize(path: Any, field: str = "path") -> str:
    """A sandbox path from user input. `/` means the workspace: the CLI's `file list` default."""
    if not isinstance(path, str) or not path.strip():
        raise FileOpError(f"`{field}` must be a non-empty string", code="invalid_request")
    if "\x00" in path:
        raise FileOpError(f"`{field}` must not contain NUL bytes", code="invalid_request")
    path = path.strip()
    return WORKSPACE if path == "/" else path


def resolve(sandbox_id: str, path: Any, *, must_exist: bool = False, field: str = "path") -> Path:
    return get_driver().host_path(sandbox_id, normalize(path, field), must_exist=must_exist)


def resolve_link(sandbox_id: str, path: Any, *, field: str = "path") -> Path:
    """Like resolve, but a final symlink is not followed (remove or move the link, not its target)."""
    spath = normalize(path, field).rstrip("/") or WORKSPACE
    parent, name = posixpath.split(spath)
    if name in ("", ".", "..") or spath == WORKSPACE:
        return resolve(sandbox_id, spath, field=field)
    return resolve(sandbox_id, parent or WORKSPACE, field=field) / name


def workspace_root(sandbox_id: str) -> Path:
    return get_driver().host_path(sandbox_id, WORKSPACE)


def sandbox_path(root: Path, host: Path) -> str:
    """The sandbox path (`/workspace/...`) of a host path under the workspace root."""
    rel = os.path.relpath(host, root)
    return WORKSPACE if rel == "." else f"{WORKSPACE}/{rel}"


def entry_dict(entry: FileEntry) -> dict[str, Any]:
    """FileInfo exactly as the contract's STRICT shape (api-contract 2.6)."""
    data = asdict(entry)
    data["mode"] = f"{entry.mode & 0o7777:04o}"
    return data


def info(sandbox_id: str, path: Any) -> dict[str, Any]:
    return entry_dict(get_driver().file_info(sandbox_id, normalize(path)))


def listing(sandbox_id: str, path: Any, depth: int = 1) -> list[dict[str, Any]]:
    return [
        entry_dict(e) for e in get_driver().list_files(sandbox_id, normalize(path), depth=depth)
    ]


def exists(sandbox_id: str, path: Any) -> bool:
    return os.path.lexists(resolve_link(sandbox_id, path))


def existing_file(sandbox_id: str, path: Any) -> Path:
    host = resolve(sandbox_id, path, must_exist=True)
    if host.is_dir():
        raise FileOpError(f"{path} is a directory, not a file", code="invalid_request")
    if not host.is_file():
        raise FileMissing(f"{path} does not exist")
    return host


def read_text(sandbox_id: str, path: Any) -> str:
    host = existing_file(sandbox_id, path)
    if host.stat().st_size > MAX_TEXT_READ_BYTES:
        raise FileOpError(
            f"{path} is larger than {MAX_TEXT_READ_BYTES} bytes; download it as raw bytes "
            "(GET /file, or `nullspace sandbox file read --encoding base64`)",
            code="file_too_large",
        )
    data = host.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileOpError(
            f"{path} holds binary (non-UTF-8) content; read it with encoding base64 "
            "(`nullspace sandbox file read --encoding base64`, or GET /file for raw bytes)",
            code="invalid_request",
        ) from None


def write_chunks(
    sandbox_id: str, path: Any, chunks: Iterable[bytes], *, limit: int | None = None
) -> Path:
    """Stream `chunks` into the file at `path` atomically, refusing more than `limit` bytes."""
    limit = settings.MAX_FILE_BYTES if limit is None else limit
    target = resolve(sandbox_id, path)
    if target.is_dir():
        raise FileOpError(f"{path} is a directory; give a file path", code="invalid_request")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = (target.stat().st_mode & 0o7777) if target.is_file() else 0o644
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > limit:
                    raise FileOpError(
                        f"{path} is larger than the {limit}-byte file limit", code="file_too_large"
                    )
                out.write(chunk)
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def iter_stream(stream: BinaryIO, size: int = COPY_CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def mkdir(sandbox_id: str, path: Any) -> None:
    host = resolve(sandbox_id, path)
    if host.exists() and not host.is_dir():
        raise FileOpError(f"{path} exists and is not a directory", code="invalid_request")
    host.mkdir(parents=True, exist_ok=True)


def remove(sandbox_id: str, path: Any) -> None:
    host = resolve_link(sandbox_id, path)
    if host == workspace_root(sandbox_id):
        raise FileOpError("refusing to remove /workspace itself", code="invalid_request")
    if not os.path.lexists(host):
        raise FileMissing(f"{path} does not exist")
    if host.is_dir() and not host.is_symlink():
        shutil.rmtree(host)
    else:
        host.unlink()


def rename(sandbox_id: str, old_path: Any, new_path: Any) -> dict[str, Any]:
    old = resolve_link(sandbox_id, old_path, field="old_path")
    if not os.path.lexists(old):
        raise FileMissing(f"{old_path} does not exist")
    new = resolve(sandbox_id, new_path, field="new_path")
    root = workspace_root(sandbox_id)
    if old == root:
        raise FileOpError("refusing to move /workspace itself", code="invalid_request")
    if old.is_dir() and (new == old or old in new.parents):
        raise FileOpError("cannot move a directory into itself", code="invalid_request")
    new.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(old, new)
    except OSError as exc:
        raise FileOpError(
            f"cannot move {old_path} to {new_path}: {exc.strerror}", code="invalid_request"
        ) from None
    return info(sandbox_id, sandbox_path(root, new))


def parse_permissions(value: Any) -> int:
    text = str(value).strip().lower().removeprefix("0o") if isinstance(value, (str, int)) else ""
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise FileOpError(
            f'`permissions` must be octal like "0644" or "755" (got {value!r})',
            code="invalid_request",
        )
    return int(text, 8)


def chmod(sandbox_id: str, path: Any, permissions: Any) -> None:
    mode = parse_permissions(permissions)
    os.chmod(resolve(sandbox_id, path, must_exist=True), mode)


def _walk_files(root: Path, start: Path) -> Iterator[Path]:
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


def _compile(pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    try:
        return re.compile(pattern)
    except re.error:
        # Not a valid regular expression: search for the literal text.
        return re.compile(re.escape(pattern))


def find_content(sandbox_id: str, path: Any, pattern: Any) -> list[dict[str, Any]]:
    """Lines matching `pattern` (regex, or literal text when not a valid regex) as SearchMatch."""
    regex = _compile(pattern)
    root = workspace_root(sandbox_id)
    start = resolve(sandbox_id, path, must_exist=True)
    matches: list[dict[str, Any]] = []
    for file in _walk_files(root, start):
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
                        {"file": sandbox_path(root, file), "line": number, "content": line}
                    )
                    if len(matches) >= MAX_MATCHES:
                        return matches
    return matches


def find_names(sandbox_id: str, path: Any, pattern: Any) -> list[str]:
    """Sandbox paths whose name (or path below `path`, when the glob has a `/`) matches the glob."""
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    root = workspace_root(sandbox_id)
    start = resolve(sandbox_id, path, must_exist=True)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath, name)
            subject = os.path.relpath(full, start) if "/" in pattern else name
            if fnmatch.fnmatchcase(subject, pattern):
                found.append(sandbox_path(root, full))
                if len(found) >= MAX_NAME_RESULTS:
                    return found
    return found


def replace(sandbox_id: str, files: Any, pattern: Any, replacement: Any) -> dict[str, int]:
    """Replace every literal occurrence of `pattern` in each file; atomic per file."""
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise FileOpError("`files` must be a non-empty list of paths", code="invalid_request")
    if not isinstance(pattern, str) or not pattern:
        raise FileOpError("`pattern` must be a non-empty string", code="invalid_request")
    if not isinstance(replacement, str):
        raise FileOpError("`replacement` must be a string", code="invalid_request")
    total = modified = 0
    for path in files:
        text = read_text(sandbox_id, path)
        count = text.count(pattern)
        if count:
            write_chunks(sandbox_id, path, [text.replace(pattern, replacement).encode("utf-8")])
            total += count
            modified += 1
    return {"replacements": total, "files_modified": modified}


def tar_directory(sandbox_id: str, path: Any) -> BinaryIO:
    """An uncompressed tar of a directory (symlinks kept as links), as an unlinked temp file."""
    host = resolve(sandbox_id, path, must_exist=True)
    if not host.is_dir():
        raise FileOpError(f"{path} is not a directory", code="invalid_request")
    handle = tempfile.TemporaryFile(dir=settings.DATA_DIR)
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(host, followlinks=False):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = Path(dirpath, name)
                tar.add(full, arcname=os.path.relpath(full, host), recursive=False)
    handle.seek(0)
    return handle
