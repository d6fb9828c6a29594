"""Resumable upload sessions into a sandbox (docs/api.md §2.6): create, parts, complete, abort.

Parts are staged under DATA_DIR (never inside the workspace), one file per part,
written to a temporary name and renamed, so what is on disk is exactly the set of
received parts. Complete assembles them, checks the whole SHA-256, and publishes
the file (or the extracted directory) at the target with one rename.

A file session into a volume stages in the volume instead (docs/volumes.md, "Uploads"):
one hidden file of the full size, allocated at create (the quota counts it), each part
written at its offset as it streams in and hashed on the way; DATA_DIR keeps only an
empty marker per received part. Complete reads it once for the whole SHA-256 and
publishes it with a rename, no copy.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from console.actor import Actor
from console.errors import DomainError
from console.jobs import every_process
from console.models import Sandbox, SandboxStatus, UploadSession, UploadStatus, Volume
from console.runtime.base import FileStore, RuntimeError_
from console.sandboxes import files as sandbox_files
from console.sandboxes.models.uploads import ConflictPolicy, UploadKind
from console.sandboxes.upload_extract import UploadFailure, extract_and_publish
from console.timefmt import iso
from console.volumes import service as volume_domain
from console.volumes.files import VolumeFileStore, staging_path

PART_SIZE = 8 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024 * 1024
MAX_PARTS = 10_000
MAX_CONCURRENCY = 4
SESSION_TTL = timedelta(hours=24)
SOURCE_KINDS = ("restartable_file", "spooled_stream", "directory_archive")
OPEN = UploadStatus.OPEN


def staging_quota_bytes() -> int:
    return 2 * settings.MAX_FILE_BYTES


def limits(for_volume: bool = False) -> dict[str, int]:
    """UploadLimits, or VolumeUploadLimits (the client tells them apart by the quota key)."""
    quota_key = "staging_quota_bytes" if for_volume else "sandbox_staging_quota_bytes"
    return {
        "max_upload_bytes": settings.MAX_FILE_BYTES,
        "max_part_bytes": MAX_PART_BYTES,
        "max_concurrency": MAX_CONCURRENCY,
        quota_key: staging_quota_bytes(),
    }


Owner = Sandbox | Volume


def _owned(owner: Owner) -> dict[str, Owner]:
    return {"volume": owner} if isinstance(owner, Volume) else {"sandbox": owner}


def files_of(owner: Owner) -> FileStore:
    """Where a session publishes: its volume's files, or its sandbox's."""
    if isinstance(owner, Volume):
        return volume_domain.files(owner)
    return sandbox_files.store(owner.runtime_id)


def _session_owner(session: UploadSession) -> Owner:
    owner = session.volume or session.sandbox
    assert owner is not None  # a session belongs to one or the other
    return owner


def staging_dir(session: UploadSession) -> Path:
    return settings.DATA_DIR / "upload-staging" / session.public_id


def part_path(session: UploadSession, number: int) -> Path:
    return staging_dir(session) / f"part-{number:06d}"


def stages_in_volume(session: UploadSession) -> bool:
    return session.volume_id is not None and session.kind == UploadKind.FILE


def _staged_store(session: UploadSession) -> VolumeFileStore:
    files = files_of(_session_owner(session))
    assert isinstance(files, VolumeFileStore)
    return files


def discard_staging(session: UploadSession) -> None:
    """Free what a session holds: its marker/part directory, and its file in the volume."""
    shutil.rmtree(staging_dir(session), ignore_errors=True)
    if stages_in_volume(session):
        try:
            _staged_store(session).discard_staging(staging_path(session.public_id))
        except (RuntimeError_, DomainError):
            pass  # the volume is gone, and its file with it


def expected_part_size(session: UploadSession, number: int) -> int:
    if number < session.part_count - 1:
        return session.part_size
    return session.content_length - session.part_size * (session.part_count - 1)


def received_parts(session: UploadSession) -> set[int]:
    directory = staging_dir(session)
    if not directory.is_dir():
        return set()
    return {
        int(p.name[5:])
        for p in directory.iterdir()
        if p.name.startswith("part-") and p.name[5:].isdigit()
    }


def display_status(session: UploadSession, received: set[int]) -> str:
    if session.status != OPEN:
        return session.status
    if session.expires_at <= timezone.now():
        return UploadStatus.EXPIRED
    if not received:
        return "created"
    return "staged" if len(received) == session.part_count else "uploading"


def to_dict(session: UploadSession) -> dict[str, Any]:
    """UploadSessionInfo exactly as the contract's STRICT shape (+ UploadLimits)."""
    received = received_parts(session) if session.status == OPEN else set()
    status = display_status(session, received)
    if session.status == UploadStatus.COMPLETED:
        accepted = session.content_length
    else:
        accepted = sum(expected_part_size(session, n) for n in received if n < session.part_count)
    missing = [n for n in range(session.part_count) if n not in received]
    open_now = status in ("created", "uploading", "staged")
    info = {
        "upload_id": session.public_id,
        "kind": session.kind,
        "source_kind": session.source_kind,
        "target_path": session.target_path,
        "content_length": session.content_length,
        "accepted_bytes": accepted,
        "reserved_staging_bytes": session.content_length if open_now else 0,
        "part_size": session.part_size,
        "part_count": session.part_count,
        "max_concurrency": MAX_CONCURRENCY,
        "status": status,
        "conflict": session.conflict,
        "checksum_algorithm": "sha256",
        "limits": limits(for_volume=session.volume_id is not None),
        "created_at": iso(session.created_at),
        "updated_at": iso(session.updated_at),
        "expires_at": iso(session.expires_at),
        "user": session.user or None,
        "next_part": (missing[0] if missing else None) if open_now else None,
        "archive_format": session.archive_format or None,
        "whole_checksum_sha256": session.whole_checksum_sha256 or None,
    }
    if session.volume_id is not None:
        del info["user"]  # VolumeUploadSessionInfo has no `user` (STRICT)
    return info


def complete_dict(session: UploadSession) -> dict[str, Any]:
    return {
        "session": to_dict(session),
        "published_bytes": session.published_bytes,
        "published_file_count": session.published_file_count,
    }


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise sandbox_files.FileOpError(message, code="invalid_request")


def _sha256_hex(value: Any, field: str) -> str:
    if value is None or value == "":
        return ""
    _require(
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdefABCDEF" for c in value),
        f"`{field}` must be a 64-character hex SHA-256",
    )
    return value.lower()


def create_session(
    owner: Owner, body: dict[str, Any], *, actor: Actor, idempotency_key: str
) -> UploadSession:
    """A new session publishing into a sandbox's or a volume's files. The actor's API key
    owns the session and scopes its Idempotency-Key."""
    owned = _owned(owner)
    api_key = actor.api_key
    if idempotency_key:
        earlier = UploadSession.objects.filter(
            **owned, api_key=api_key, idempotency_key=idempotency_key
        ).first()
        if earlier:
            return earlier
    kind = body.get("kind")
    if kind not in UploadKind.values:
        raise sandbox_files.FileOpError(
            "`kind` must be file or directory_tar", code="invalid_request"
        )
    source_kind = body.get("source_kind") or (
        "directory_archive" if kind == UploadKind.DIRECTORY_TAR else "restartable_file"
    )
    _require(source_kind in SOURCE_KINDS, f"`source_kind` must be one of {', '.join(SOURCE_KINDS)}")
    conflict = body.get("conflict") or ConflictPolicy.MERGE
    _require(conflict in ConflictPolicy.values, "`conflict` must be merge, replace or error")
    archive_format = body.get("archive_format") or ""
    if kind == UploadKind.DIRECTORY_TAR:
        _require(archive_format in ("", "tar"), "`archive_format` must be tar")
        archive_format = "tar"
    else:
        _require(archive_format == "", "`archive_format` is only for kind directory_tar")
    _require(
        (body.get("checksum_algorithm") or "sha256") == "sha256",
        "`checksum_algorithm` must be sha256",
    )
    length = body.get("content_length")
    if not (isinstance(length, int) and not isinstance(length, bool) and length >= 0):
        raise sandbox_files.FileOpError(
            "`content_length` must be a non-negative integer", code="invalid_request"
        )
    metadata = body.get("metadata") or {}
    _require(isinstance(metadata, dict), "`metadata` must be an object")
    user = body.get("user") or ""
    _require(isinstance(user, str), "`user` must be a string")
    files = files_of(owner)
    target = sandbox_files.locate(
        files, body.get("target_path"), sandbox_files.user_of(user), "target_path"
    )
    if length > settings.MAX_FILE_BYTES:
        raise UploadFailure(
            "size_limit_exceeded",
            f"{length} bytes is over the {settings.MAX_FILE_BYTES}-byte upload limit",
            path=target,
        )
    if conflict == ConflictPolicy.ERROR and files.exists(target):
        raise UploadFailure(
            "target_conflict", f"{target} already exists (conflict=error)", path=target
        )
    if kind == UploadKind.FILE and files.is_dir(target):
        raise UploadFailure(
            "target_conflict", f"{target} is a directory; give a file path", path=target
        )
    # Replacing the workspace would move the sandbox's root directory away under its processes.
    _require(
        not (
            kind == UploadKind.DIRECTORY_TAR
            and conflict == ConflictPolicy.REPLACE
            and target in ("/", sandbox_files.WORKSPACE)
        ),
        f"conflict=replace cannot replace {target} itself; use conflict=merge or a subdirectory",
    )
    in_volume = isinstance(files, VolumeFileStore) and kind == UploadKind.FILE
    if isinstance(files, VolumeFileStore):
        files.check_room(length, "the volume")
    _check_staging_space(owned, length, on_server_disk=not in_volume)
    part_size = max(PART_SIZE, math.ceil(length / MAX_PARTS))
    now = timezone.now()
    try:
        with transaction.atomic():
            session = UploadSession.objects.create(
                project=owner.project,
                **owned,
                api_key=api_key,
                idempotency_key=idempotency_key,
                kind=kind,
                source_kind=source_kind,
                target_path=target,
                content_length=length,
                part_size=part_size,
                part_count=max(1, math.ceil(length / part_size)),
                conflict=conflict,
                archive_format=archive_format,
                whole_checksum_sha256=_sha256_hex(
                    body.get("whole_checksum_sha256"), "whole_checksum_sha256"
                ),
                user=user,
                metadata=metadata,
                created_at=now,
                expires_at=now + SESSION_TTL,
            )
            if in_volume:
                assert isinstance(files, VolumeFileStore)
                # Inside the transaction: a volume too full for it leaves no session behind.
                files.create_staging(staging_path(session.public_id), length)
            return session
    except IntegrityError:
        # A concurrent retry with the same Idempotency-Key won the race.
        return UploadSession.objects.get(**owned, api_key=api_key, idempotency_key=idempotency_key)


def _check_staging_space(owned: dict[str, Owner], length: int, *, on_server_disk: bool) -> None:
    reserved = sum(
        s.content_length
        for s in UploadSession.objects.filter(**owned, status=OPEN, expires_at__gt=timezone.now())
    )
    quota = staging_quota_bytes()
    if reserved + length > quota:
        raise UploadFailure(
            "insufficient_staging_space",
            f"open uploads here already reserve {reserved} of {quota} staging bytes; "
            "complete or abort them first",
            retryable=True,
        )
    if not on_server_disk:
        return  # staged in the volume: its own quota bounds it (checked by the caller)
    root = settings.DATA_DIR
    free = shutil.disk_usage(root).free
    if free < 2 * length:  # staged parts plus the assembled copy
        raise UploadFailure(
            "insufficient_staging_space",
            f"the server has {free} bytes free, {2 * length} needed",
            retryable=True,
        )


def _ensure_open(session: UploadSession) -> None:
    if session.status == OPEN and session.expires_at <= timezone.now():
        UploadSession.objects.filter(pk=session.pk, status=OPEN).update(status=UploadStatus.EXPIRED)
        session.status = UploadStatus.EXPIRED
        discard_staging(session)
    refusals = {
        UploadStatus.COMPLETED: ("upload_already_completed", "this upload is already completed"),
        UploadStatus.ABORTED: ("upload_aborted", "this upload was aborted"),
        UploadStatus.EXPIRED: ("upload_expired", "this upload expired; start a new one"),
        UploadStatus.FAILED: ("upload_aborted", "this upload failed; start a new one"),
        UploadStatus.COMPLETING: ("upload_already_completed", "this upload is being completed"),
    }
    if session.status in refusals:
        reason, message = refusals[UploadStatus(session.status)]
        raise UploadFailure(reason, message, path=session.target_path)


def put_part(
    session: UploadSession, number: int, stream: sandbox_files.Readable, part_sha256: str | None
) -> None:
    _ensure_open(session)
    if not 0 <= number < session.part_count:
        raise UploadFailure(
            "part_out_of_range",
            f"part {number} is outside 0..{session.part_count - 1}",
            part_number=number,
        )
    expected_hash = _sha256_hex(part_sha256, "x-nullspace-part-sha256")
    expected = expected_part_size(session, number)
    directory = staging_dir(session)
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    received = [0]

    def bounded() -> Iterator[bytes]:
        """The body, hashed as it goes, never past the part's own bytes."""
        for chunk in sandbox_files.iter_stream(stream):
            received[0] += len(chunk)
            if received[0] > expected:
                return
            digest.update(chunk)
            yield chunk

    def check() -> None:
        size = received[0]
        if size != expected:
            raise UploadFailure(
                "part_size_mismatch",
                f"part {number} must be {expected} bytes (got {'more' if size > expected else size})",
                part_number=number,
                retryable=False,
            )
        if expected_hash and digest.hexdigest() != expected_hash:
            raise UploadFailure(
                "invalid_part_checksum",
                f"part {number} does not match its x-nullspace-part-sha256",
                part_number=number,
                retryable=True,
            )

    if stages_in_volume(session):
        # Straight to its offset in the staged file; only a checked part gets its marker,
        # and a refused one is simply written again by its retry.
        _staged_store(session).write_at(
            staging_path(session.public_id), number * session.part_size, bounded()
        )
        check()
        part_path(session, number).touch()
    else:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".part-{number:06d}.")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in bounded():
                    out.write(chunk)
            check()
            os.replace(tmp, part_path(session, number))
        finally:
            Path(tmp).unlink(missing_ok=True)
    UploadSession.objects.filter(pk=session.pk).update(updated_at=timezone.now())
    session.refresh_from_db()


def abort(session: UploadSession) -> None:
    if session.status in (OPEN, UploadStatus.FAILED, UploadStatus.EXPIRED):
        UploadSession.objects.filter(pk=session.pk, status=session.status).update(
            status=UploadStatus.ABORTED, updated_at=timezone.now()
        )
    discard_staging(session)
    session.refresh_from_db()


def complete(session: UploadSession, whole_checksum: Any) -> UploadSession:
    """Assemble, verify and publish. A repeat on a completed session returns it unchanged."""
    if session.status == UploadStatus.COMPLETED:
        return session
    _ensure_open(session)
    checksum = _sha256_hex(whole_checksum, "whole_checksum_sha256") or session.whole_checksum_sha256
    if session.whole_checksum_sha256 and checksum != session.whole_checksum_sha256:
        raise UploadFailure(
            "whole_checksum_mismatch", "the checksum differs from the one given at create"
        )
    missing = sorted(set(range(session.part_count)) - received_parts(session))
    if missing:
        raise UploadFailure(
            "missing_parts",
            f"{len(missing)} part(s) not received yet, first {missing[0]}",
            retryable=True,
            part_number=missing[0],
            details={"missing_parts": missing[:100]},
        )
    claimed = UploadSession.objects.filter(pk=session.pk, status=OPEN).update(
        status=UploadStatus.COMPLETING, updated_at=timezone.now()
    )
    if not claimed:
        session.refresh_from_db()
        return complete(session, whole_checksum)
    try:
        published = _publish(session, checksum)
    except BaseException as exc:
        # A bad checksum or archive will not get better: fail the session and free its staging.
        final = (
            UploadStatus.FAILED if isinstance(exc, UploadFailure) and not exc.retryable else OPEN
        )
        UploadSession.objects.filter(pk=session.pk).update(
            status=final, failure_reason=getattr(exc, "reason", "")[:48], updated_at=timezone.now()
        )
        if final == UploadStatus.FAILED:
            discard_staging(session)
        raise
    UploadSession.objects.filter(pk=session.pk).update(
        status=UploadStatus.COMPLETED,
        published_bytes=published[0],
        published_file_count=published[1],
        updated_at=timezone.now(),
    )
    discard_staging(session)
    session.refresh_from_db()
    return session


def _parts(session: UploadSession) -> Iterator[bytes]:
    for number in range(session.part_count):
        with part_path(session, number).open("rb") as handle:
            yield from sandbox_files.iter_stream(handle)


def _check_whole(session: UploadSession, checksum: str, chunks: Iterator[bytes]) -> None:
    digest = hashlib.sha256()
    for chunk in chunks:  # checked before anything reaches the sandbox or the volume
        digest.update(chunk)
    if checksum and digest.hexdigest() != checksum:
        raise UploadFailure(
            "whole_checksum_mismatch",
            "the assembled upload does not match whole_checksum_sha256",
            path=session.target_path,
            details={"actual_sha256": digest.hexdigest()},
        )


def _publish(session: UploadSession, checksum: str) -> tuple[int, int]:
    files = files_of(_session_owner(session))
    user = sandbox_files.user_of(session.user)
    target = session.target_path
    if stages_in_volume(session):
        staged = _staged_store(session)
        spath = staging_path(session.public_id)
        if checksum:
            _check_whole(session, checksum, staged.read_blocks(spath))
        if session.conflict == ConflictPolicy.ERROR and files.exists(target):
            raise UploadFailure("target_conflict", f"{session.target_path} already exists")
        if files.is_dir(target):
            raise UploadFailure("target_conflict", f"{session.target_path} is a directory")
        staged.publish_staging(spath, target, size=session.content_length)
        return session.content_length, 1
    _check_whole(session, checksum, _parts(session))
    if session.kind == UploadKind.FILE:
        if session.conflict == ConflictPolicy.ERROR and files.exists(target):
            raise UploadFailure("target_conflict", f"{session.target_path} already exists")
        if files.is_dir(target):
            raise UploadFailure("target_conflict", f"{session.target_path} is a directory")
        # Written beside the target and renamed: readers never see a partial file.
        files.write(target, _parts(session), limit=settings.MAX_FILE_BYTES, user=user)
        return session.content_length, 1
    if isinstance(files, VolumeFileStore):
        files.check_room(session.content_length, session.target_path)
    archive = staging_dir(session) / "archive.tar"
    with archive.open("wb") as out:
        for chunk in _parts(session):
            out.write(chunk)
    return extract_and_publish(
        archive,
        files,
        target,
        session.conflict,
        session.target_path,
        limit=settings.MAX_FILE_BYTES,
        user=user,
    )


@every_process("expire-upload-sessions", every=300)
def expire_stale() -> int:
    """Expire open sessions past expires_at (or of a destroyed sandbox) and free their staged parts."""
    count = 0
    stale = Q(expires_at__lte=timezone.now()) | Q(sandbox__status=SandboxStatus.DESTROYED)
    for session in UploadSession.objects.filter(stale, status=OPEN):
        count += UploadSession.objects.filter(pk=session.pk, status=OPEN).update(
            status=UploadStatus.EXPIRED
        )
        discard_staging(session)
    return count
