"""The artifact store for bundles, and the server's own recomputation of `bundle_digest`.

The upload is streamed to a temporary file (bounded), then read back as a tar: each
entry's kind, mode, size and content digest feed the same digest the client computed
(docs/agents.md, "Bundle digest"). Only a bundle whose digest matches both the
version's and the upload header's is kept; anything else is deleted and refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from django.conf import settings

from console.errors import DomainError

CHUNK = 1024 * 1024
MAX_FILES = 100_000


class Readable(Protocol):
    """An upload body: the request itself, or a file."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str
    mode: int
    size: int
    digest: str


@dataclass(frozen=True)
class StoredBundle:
    path: Path
    size: int
    file_count: int


def store_root() -> Path:
    root = Path(settings.DATA_DIR) / "agents" / "bundles"
    root.mkdir(parents=True, exist_ok=True)
    return root


def config_digest(canonical_config: dict[str, Any]) -> str:
    encoded = json.dumps(canonical_config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def bundle_digest(config_digest_hex: str, entries: Iterable[Entry]) -> str:
    hasher = hashlib.sha256(f"config:{config_digest_hex}\n".encode())
    for entry in sorted(entries, key=lambda e: e.path):
        hasher.update(
            b"\0".join(
                part.encode()
                for part in (entry.path, entry.kind, str(entry.mode), str(entry.size), entry.digest)
            )
            + b"\n"
        )
    return hasher.hexdigest()


def _entries(archive: Path) -> list[Entry]:
    entries: list[Entry] = []
    try:
        tar = tarfile.open(archive, mode="r:")
    except tarfile.TarError as exc:
        raise DomainError(
            "invalid_request", f"the bundle is not an uncompressed tar: {exc}"
        ) from None
    with tar:
        for member in tar:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts or not member.name:
                raise DomainError(
                    "invalid_request", f"bundle entry {member.name!r} escapes the project"
                )
            if len(entries) >= MAX_FILES:
                raise DomainError(
                    "invalid_request", f"the bundle has more than {MAX_FILES} entries"
                )
            if member.isdir():
                entries.append(Entry(member.name.rstrip("/"), "dir", member.mode, 0, ""))
            elif member.isfile():
                hasher = hashlib.sha256()
                source = tar.extractfile(member)
                assert source is not None
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                entries.append(
                    Entry(member.name, "file", member.mode, member.size, hasher.hexdigest())
                )
            elif member.issym():
                digest = hashlib.sha256(member.linkname.encode()).hexdigest()
                entries.append(Entry(member.name, "symlink", member.mode, 0, digest))
            else:
                raise DomainError(
                    "invalid_request",
                    f"bundle entry {member.name!r} is a hard link, device or fifo; bundles hold "
                    "files, directories and relative symlinks only",
                )
    return entries


def receive(
    stream: Readable,
    *,
    length: int | None,
    version_public_id: str,
    expected_digest: str,
    cfg_digest: str,
) -> StoredBundle:
    """Stream the upload to disk, check it, and keep it as `<version>.tar`; refuse a mismatch."""
    limit = settings.AGENT_MAX_BUNDLE_BYTES
    if length is not None and length > limit:
        raise DomainError(
            "payload_too_large", f"the bundle is over this server's limit of {limit} bytes"
        )
    root = store_root()
    fd, name = tempfile.mkstemp(dir=root, prefix=".upload-", suffix=".tar")
    temp = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise DomainError(
                        "payload_too_large",
                        f"the bundle is over this server's limit of {limit} bytes",
                    )
                out.write(chunk)
        if size == 0:
            raise DomainError("invalid_request", "the bundle upload is empty")
        entries = _entries(temp)
        actual = bundle_digest(cfg_digest, entries)
        if actual != expected_digest:
            raise DomainError(
                "bundle_digest_mismatch",
                "the uploaded bundle does not match its bundle_digest (recomputed on the server)",
                details={"expected": expected_digest, "actual": actual},
                suggested_action="Deploy again: the project changed during upload, or the tar was altered.",
            )
        final = root / f"{version_public_id}.tar"
        os.replace(temp, final)
        return StoredBundle(
            path=final, size=size, file_count=sum(1 for e in entries if e.kind != "dir")
        )
    finally:
        temp.unlink(missing_ok=True)


def remove(path: str) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
