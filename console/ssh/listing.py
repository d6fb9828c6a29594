"""What the console shows of a sandbox's SSH access (templates/console/ssh/card.html)."""

from __future__ import annotations

from django.utils import timezone

from console.models import Sandbox, SshAccess

# Live certificates are capped per sandbox (console/ssh/access.py); the page shows the newest.
SHOWN = 20


def live_accesses(sandbox: Sandbox) -> list[SshAccess]:
    """Unexpired certificates of a running sandbox, newest first; none once it is gone."""
    if not sandbox.is_live:
        return []
    rows = SshAccess.objects.filter(sandbox=sandbox, expires_at__gt=timezone.now())
    return list(rows.order_by("-created_at")[:SHOWN])
