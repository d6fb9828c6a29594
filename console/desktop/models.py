"""A desktop sandbox's screen settings, live stream and recordings (docs/desktop.md)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.ids import new_public_id


def new_recording_id() -> str:
    return new_public_id("rec_")


class DesktopSession(models.Model):
    """The X display of a sandbox of the `desktop` template, as asked for at create."""

    sandbox = models.OneToOneField(
        "console.Sandbox", on_delete=models.CASCADE, related_name="desktop_session"
    )
    display = models.PositiveSmallIntegerField(default=1)  # ":1"
    width = models.PositiveIntegerField(default=1920)
    height = models.PositiveIntegerField(default=1080)
    dpi = models.PositiveIntegerField(default=96)
    # Background processes of the sandbox (host pids) by role: xvfb, wm, vnc, bridge.
    pids = models.JSONField(default=dict, blank=True)
    # Set while one request (re)starts the desktop; others wait instead of starting a second.
    starting_until = models.DateTimeField(null=True, blank=True)
    # The live stream: its auth key is an HMAC of this nonce (never stored); "" = stopped.
    stream_nonce = models.CharField(max_length=64, blank=True)
    # The stream before it, so that its viewers learn they were replaced or ended.
    stream_previous_nonce = models.CharField(max_length=64, blank=True)
    stream_view_only = models.BooleanField(default=False)
    stream_started_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"desktop :{self.display} of sandbox {self.sandbox_id}"


class RecordingStatus(models.TextChoices):
    RECORDING = "recording", "Recording"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class DesktopRecording(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_recording_id)
    sandbox = models.ForeignKey(
        "console.Sandbox", on_delete=models.CASCADE, related_name="desktop_recordings"
    )
    name = models.CharField(max_length=200, null=True, blank=True)
    status = models.CharField(
        max_length=12, choices=RecordingStatus.choices, default=RecordingStatus.RECORDING
    )
    pid = models.BigIntegerField(null=True, blank=True)  # the ffmpeg process while recording
    file_path = models.CharField(max_length=1024)  # in the sandbox
    duration_seconds = models.FloatField(null=True, blank=True)
    file_size_bytes = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.public_id
