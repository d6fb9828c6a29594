"""POST /v1/sandboxes/{id}/ssh-access: what is refused before any sandbox work (bad keys,
lifetimes, users, tenancy, state), and the CA's certificates as OpenSSH reads them.
The end-to-end path (sshd, relay, the real CLI and OpenSSH) is tests/console/test_cli_ssh.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from console.models import SandboxStatus, SshAccess
from console.ssh import ca
from tests.factories import make_sandbox_row

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host"


@pytest.fixture(autouse=True)
def _own_ca(settings, tmp_path):
    settings.SSH_CA_KEY_FILE = str(tmp_path / "ca" / "ssh_ca_ed25519")
    settings.RUNTIME_ISOLATION = "full"


@pytest.fixture
def sandbox(project):
    return make_sandbox_row(project)


def post(api, sandbox_id: str, body: dict):
    return api.post(
        f"/v1/sandboxes/{sandbox_id}/ssh-access",
        data=json.dumps(body),
        content_type="application/json",
    )


@pytest.mark.parametrize(
    "body, words",
    [
        ({}, "public_key"),
        ({"public_key": ""}, "public_key"),
        ({"public_key": "ssh-ed25519 not-base64!"}, "public_key"),
        ({"public_key": "ssh-ed25519 AAAA"}, "public_key"),
        ({"public_key": ED25519 + "\n" + ED25519}, "single key line"),
        ({"public_key": "x" * (ca.MAX_PUBLIC_KEY_CHARS + 1)}, "longer than"),
        ({"public_key": 42}, "public_key"),
        ({"public_key": ED25519, "expires_in_minutes": 0}, "expires_in_minutes"),
        ({"public_key": ED25519, "expires_in_minutes": 61}, "expires_in_minutes"),
        ({"public_key": ED25519, "expires_in_minutes": "10"}, "expires_in_minutes"),
        ({"public_key": ED25519, "expires_in_minutes": True}, "expires_in_minutes"),
        ({"public_key": ED25519, "user": "Not A User"}, "user"),
        ({"public_key": ED25519, "user": "../root"}, "user"),
        ({"public_key": ED25519, "ttl": 5}, "Unknown field"),
    ],
)
def test_bad_requests_are_400(api, sandbox, body, words):
    response = post(api, sandbox.public_id, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"
    assert words in response.json()["error"]
    assert not SshAccess.objects.exists()


def test_certificates_are_refused_as_keys(api, sandbox, tmp_path):
    cert = ca.sign_user_certificate(
        ca.parse_public_key(ED25519).key,
        principals=["x"],
        key_id="x",
        valid_after=timezone.now(),
        valid_before=timezone.now() + timedelta(minutes=1),
    )
    response = post(api, sandbox.public_id, {"public_key": cert})
    assert response.status_code == 400 and "certificate" in response.json()["error"]


def test_short_rsa_keys_are_refused(api, sandbox, tmp_path):
    key = tmp_path / "rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(key)], check=True
    )
    response = post(api, sandbox.public_id, {"public_key": (tmp_path / "rsa.pub").read_text()})
    assert response.status_code == 400 and "2048" in response.json()["error"]


def test_another_projects_sandbox_is_404(api, other_project):
    foreign = make_sandbox_row(other_project)
    response = post(api, foreign.public_id, {"public_key": ED25519})
    assert response.status_code == 404 and response.json()["code"] == "sandbox_not_found"
    assert post(api, "sb_nope", {"public_key": ED25519}).status_code == 404


@pytest.mark.parametrize(
    "status, code, http",
    [
        (SandboxStatus.PAUSED, "sandbox_not_ready", 409),
        (SandboxStatus.CREATING, "sandbox_not_ready", 409),
        (SandboxStatus.DESTROYED, "sandbox_not_found", 404),
        (SandboxStatus.ERROR, "sandbox_not_found", 404),
    ],
)
def test_a_sandbox_that_cannot_run_is_refused(api, project, status, code, http):
    sandbox = make_sandbox_row(project, status=status)
    response = post(api, sandbox.public_id, {"public_key": ED25519})
    assert (response.status_code, response.json()["code"]) == (http, code)
    assert not SshAccess.objects.exists()


def test_live_certificates_per_sandbox_are_capped_and_expired_rows_dropped(api, sandbox):
    from console.ssh.access import MAX_LIVE_PER_SANDBOX

    def rows(count: int, expires_at) -> None:
        SshAccess.objects.bulk_create(
            SshAccess(
                project=sandbox.project, sandbox=sandbox, user="user", principal="p",
                serial=i, key_type="ssh-ed25519", key_fingerprint="f", expires_at=expires_at,
            )
            for i in range(count)
        )  # fmt: skip

    rows(5, timezone.now() - timedelta(minutes=1))
    rows(MAX_LIVE_PER_SANDBOX, timezone.now() + timedelta(minutes=5))
    response = post(api, sandbox.public_id, {"public_key": ED25519})
    assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"
    assert SshAccess.objects.filter(sandbox=sandbox).count() == MAX_LIVE_PER_SANDBOX


def test_read_only_keys_cannot_issue_access(client, read_key, sandbox):
    raw, _ = read_key
    response = client.post(
        f"/v1/sandboxes/{sandbox.public_id}/ssh-access",
        data=json.dumps({"public_key": ED25519}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 403


def test_without_isolation_ssh_is_not_offered(api, sandbox, settings):
    settings.RUNTIME_ISOLATION = "none"
    response = post(api, sandbox.public_id, {"public_key": ED25519})
    assert response.status_code == 501 and response.json()["code"] == "not_implemented"


def test_the_ca_key_is_made_once_and_private(settings):
    first = ca.ca_public_line()
    path = ca.ca_key_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ca._load_ca.cache_clear()
    assert ca.ca_public_line() == first


def test_user_certificates_read_back_with_ssh_keygen(tmp_path):
    now = timezone.now()
    cert = ca.sign_user_certificate(
        ca.parse_public_key(ED25519).key,
        principals=["sb_abc:user"],
        key_id="ssh_1 sb_abc user",
        valid_after=now,
        valid_before=now + timedelta(minutes=7),
        serial=1234,
    )
    path = tmp_path / "k-cert.pub"
    path.write_text(cert + "\n")
    listed = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "user certificate" in listed
    assert "Serial: 1234" in listed and 'Key ID: "ssh_1 sb_abc user"' in listed
    assert "sb_abc:user" in listed
    assert "permit-pty" in listed and "permit-port-forwarding" in listed
    assert "permit-agent-forwarding" not in listed and "permit-X11-forwarding" not in listed
    assert ca.fingerprint(ca.ca_private_key().public_key()) in listed
