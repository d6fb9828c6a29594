"""Build-context blobs (docs/templates.md): files the client uploads before a build,
named by their SHA-256 and kept per team under DATA_DIR/template-blobs/, so one team
can never learn whether another uploaded some content."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from console.errors import DomainError

BLOB_ID = re.compile(r"^blob_([0-9a-f]{64})$")
CHUNK = 1 << 20


def root(team_pk: int) -> Path:
    return Path(settings.DATA_DIR) / "template-blobs" / str(int(team_pk))


def blob_id(sha256: str) -> str:
    return f"blob_{sha256}"


def digest_of(blob: str) -> str:
    found = BLOB_ID.fullmatch(blob or "")
    if not found:
        raise DomainError("invalid_request", f"{blob!r} is not a blob id")
    return found.group(1)


def path(team_pk: int, blob: str) -> Path:
    return root(team_pk) / digest_of(blob)


def exists(team_pk: int, blob: str) -> bool:
    return path(team_pk, blob).is_file()


def store(team_pk: int, blob: str, chunks: Iterable[bytes], limit: int) -> int:
    """Keep the bytes as `blob` if their SHA-256 is its name; refuse (and keep nothing)
    otherwise or past `limit` bytes."""
    expected = digest_of(blob)
    folder = root(team_pk)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{expected}.{os.getpid()}.{os.urandom(4).hex()}"
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise DomainError(
                        "payload_too_large", f"a build context file may hold at most {limit} bytes"
                    )
                hasher.update(chunk)
                fh.write(chunk)
        if hasher.hexdigest() != expected:
            raise DomainError(
                "invalid_request", "the uploaded bytes do not match the blob's SHA-256"
            )
        os.replace(tmp, folder / expected)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def read_chunks(team_pk: int, blob: str) -> Iterable[bytes]:
    with open(path(team_pk, blob), "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk
