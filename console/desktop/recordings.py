"""Recordings: ffmpeg (x11grab) writes an MP4 (H.264) of the screen into the sandbox while
it records; stop sends it `q` on stdin so it finishes the file properly (an MP4 without
its index does not play). The file stays in the sandbox and downloads through the file
store; it goes with the sandbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from console.desktop import session as desktop
from console.errors import DomainError
from console.models import DesktopRecording, DesktopSession, RecordingStatus, Sandbox
from console.runtime import get_driver
from console.sandboxes import service as sandboxes
from console.timefmt import iso

FOLDER = "/home/user/Recordings"
FRAME_RATE = 10
STOP_SECONDS = 15  # ffmpeg has this long to write the file's index after `q`
MAX_NAME = 200
MAX_RECORDINGS = 20  # kept per sandbox; each is a file on the sandbox's disk


def to_dict(recording: DesktopRecording) -> dict[str, Any]:
    """RecordingInfo (STRICT: exactly these keys)."""
    created: datetime = recording.created_at
    return {
        "id": recording.public_id,
        "name": recording.name,
        "status": recording.status,
        "file_path": recording.file_path,
        "duration_seconds": recording.duration_seconds,
        "file_size_bytes": recording.file_size_bytes,
        "created_at": iso(created),
    }


def get(sandbox: Sandbox, recording_id: str) -> DesktopRecording:
    found = DesktopRecording.objects.filter(sandbox=sandbox, public_id=recording_id).first()
    if found is None:
        raise DomainError("recording_not_found", f"Recording {recording_id} not found")
    return found


def start(sandbox: Sandbox, session: DesktopSession, name: Any) -> DesktopRecording:
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise DomainError("invalid_request", f"name must be a string of at most {MAX_NAME} chars")
    with transaction.atomic():
        Sandbox.objects.select_for_update().filter(pk=sandbox.pk).exists()
        recordings = DesktopRecording.objects.filter(sandbox=sandbox)
        if recordings.filter(status=RecordingStatus.RECORDING).exists():
            raise DomainError(
                "recording_conflict",
                "A recording is already running on this desktop; stop it first",
            )
        if recordings.count() >= MAX_RECORDINGS:
            raise DomainError(
                "quota_exceeded",
                f"This sandbox already has {MAX_RECORDINGS} recordings; delete some first",
            )
        recording = DesktopRecording(sandbox=sandbox, name=name)
        recording.file_path = f"{FOLDER}/{recording.public_id}.mp4"
        recording.save()
    desktop.run(session, sandbox, ["mkdir", "-p", FOLDER])
    try:
        recording.pid = desktop.background(
            sandbox,
            session,
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-f",
                "x11grab",
                "-framerate",
                str(FRAME_RATE),
                "-video_size",
                f"{session.width}x{session.height}",
                "-i",
                f":{session.display}.0",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                # Even sizes: yuv420p needs them.
                "-vf",
                "crop=trunc(iw/2)*2:trunc(ih/2)*2",
                "-movflags",
                "+faststart",
                "-y",
                recording.file_path,
            ],
            stdin=True,
        )
    except DomainError:
        recording.status = RecordingStatus.FAILED
        recording.save(update_fields=["status"])
        raise
    recording.save(update_fields=["pid"])
    return recording


def stop(sandbox: Sandbox, recording_id: Any) -> DesktopRecording:
    if not isinstance(recording_id, str):
        raise DomainError("invalid_request", "recording_id must be a string")
    recording = get(sandbox, recording_id)
    if recording.status != RecordingStatus.RECORDING:
        return recording
    driver = get_driver()
    pid = recording.pid
    exit_code = None
    if pid:
        sandboxes.quietly(lambda: driver.write_stdin(sandbox.runtime_id, pid, b"q"))
        exit_code = sandboxes.driver_call(
            lambda: driver.wait_process(sandbox.runtime_id, pid, STOP_SECONDS)
        )
        if exit_code is None:
            sandboxes.quietly(lambda: driver.kill_process(sandbox.runtime_id, pid))
    now = timezone.now()
    recording.stopped_at = now
    recording.duration_seconds = round((now - recording.created_at).total_seconds(), 3)
    try:
        entry = sandboxes.driver_call(
            lambda: driver.files(sandbox.runtime_id).stat(recording.file_path)
        )
        recording.file_size_bytes = entry.size
    except DomainError:
        recording.file_size_bytes = None
    ok = exit_code == 0 and bool(recording.file_size_bytes)
    recording.status = RecordingStatus.STOPPED if ok else RecordingStatus.FAILED
    recording.pid = None
    recording.save()
    return recording


def delete(sandbox: Sandbox, recording_id: str) -> None:
    recording = get(sandbox, recording_id)
    if recording.status == RecordingStatus.RECORDING:
        stop(sandbox, recording_id)
    files = get_driver().files(sandbox.runtime_id)
    sandboxes.quietly(lambda: files.remove(recording.file_path))
    recording.delete()
