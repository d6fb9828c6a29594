from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_ssh_access_id
from console.sandboxes.models.sandboxes import Sandbox


class SshAccess(models.Model):
    """One certificate the server's SSH CA signed for a sandbox (docs/ssh.md).

    The certificate itself is not kept: it is public, short-lived, and only valid for
    this sandbox's principal. The row is what the relay checks before it forwards a
    connection (a live sandbox with an unexpired certificate) and what the console lists.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_ssh_access_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="ssh_accesses")
    user = models.CharField(max_length=32)
    principal = models.CharField(max_length=80)
    serial = models.PositiveBigIntegerField()
    key_type = models.CharField(max_length=64)
    key_fingerprint = models.CharField(max_length=80)
    created_by_key = models.ForeignKey(
        "console.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # The relay port it was given: a restarted server reopens the same one (docs/ssh.md).
    port = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["sandbox", "expires_at"])]
        ordering = ["-created_at"]
