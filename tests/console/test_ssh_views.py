"""The sandbox page's SSH card: how to connect, and only the unexpired certificates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.actor import SYSTEM, Actor
from console.models import SshAccess
from console.sandboxes import service as sandboxes


@pytest.fixture
def sandbox(runtime, project, member):
    made, _token = sandboxes.create_sandbox(project, actor=Actor.person(member))
    return made


def certificate(sandbox, fingerprint: str, minutes: int) -> SshAccess:
    return SshAccess.objects.create(
        project=sandbox.project, sandbox=sandbox, user="user", principal=f"{sandbox.public_id}:user",
        serial=1, key_type="ssh-ed25519", key_fingerprint=fingerprint,
        expires_at=timezone.now() + timedelta(minutes=minutes),
    )  # fmt: skip


def page(client, sandbox) -> str:
    url = reverse(
        "sandbox-detail",
        kwargs={
            "team_slug": sandbox.project.team.slug,
            "project_slug": sandbox.project.slug,
            "sandbox_id": sandbox.public_id,
        },
    )
    return client.get(url).content.decode()


def test_the_card_lists_unexpired_certificates_only(viewer_client, sandbox):
    body = page(viewer_client, sandbox)
    assert 'id="ssh"' in body and f"nullspace ssh {sandbox.public_id}" in body
    assert "No valid SSH certificate." in body

    certificate(sandbox, "SHA256:live-one", 10)
    certificate(sandbox, "SHA256:expired-one", -1)
    body = page(viewer_client, sandbox)
    assert "SHA256:live-one" in body and "SHA256:expired-one" not in body
    assert "No valid SSH certificate." not in body


def test_a_gone_sandbox_shows_none(viewer_client, sandbox):
    certificate(sandbox, "SHA256:live-one", 10)
    sandboxes.destroy_sandbox(sandbox, actor=SYSTEM)
    body = page(viewer_client, sandbox)
    assert 'id="ssh"' in body and "SHA256:live-one" not in body
