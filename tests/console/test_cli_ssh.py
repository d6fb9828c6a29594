"""The real `nullspace ssh` / `sandbox ssh-access` (0.1.9) against a live server, and the
printed command run with the system's OpenSSH (ssh, scp, rsync). docs/ssh.md."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.live import VENV_BIN, free_port, launch

# Needs OpenSSH's client tools and rsync on the machine (.ci/run installs them).
pytestmark = pytest.mark.cli

SSH_TIMEOUT = 120


def identity(live) -> Path:
    """Where the CLI keeps its key (HOME is the live server's data dir)."""
    return live.data_dir / ".nullspace" / "ssh" / "nullspace_ssh_ed25519"


def known_hosts(live) -> Path:
    return identity(live).parent / "known_hosts"


def access(live, sandbox_id: str, *options: str) -> dict:
    result = live.cli("sandbox", "ssh-access", sandbox_id, "--json", *options, check=True)
    return json.loads(result.stdout)


def ssh_options(live, port: int, certificate: Path | None = None) -> list[str]:
    """Stock OpenSSH options for the CLI's key, its known_hosts and `certificate`."""
    return [
        "-i", str(identity(live)),
        "-o", f"CertificateFile={certificate or str(identity(live)) + '-cert.pub'}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts(live)}",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-p", str(port),
    ]  # fmt: skip


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=SSH_TIMEOUT, stdin=subprocess.DEVNULL,
        **kwargs,
    )  # fmt: skip


def ca_key(live) -> Path:
    return live.data_dir / "ssh_ca_ed25519"


def sign_with_server_ca(live, tmp_path: Path, principal: str, validity: str) -> Path:
    """A user certificate for the CLI's key, signed by the server's own CA key with
    ssh-keygen (not through the API), valid for `validity` (ssh-keygen -V)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    public = tmp_path / "key.pub"
    shutil.copy(str(identity(live)) + ".pub", public)
    os.chmod(ca_key(live), 0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca_key(live)), "-I", "test", "-n", principal,
         "-V", validity, str(public)],
        check=True, capture_output=True,
    )  # fmt: skip
    return tmp_path / "key-cert.pub"


def test_nullspace_ssh_runs_a_command(live, sandbox_id):
    result = live.cli("ssh", sandbox_id, "--", "python", "--version", input="")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("Python 3.")

    # The exit code of the remote command is the CLI's.
    failed = live.cli("ssh", sandbox_id, "--", "sh", "-c", "'exit 7'", input="")
    assert failed.returncode == 7, (failed.stdout, failed.stderr)


def test_access_shape_and_audit(live, sandbox_id):
    got = access(live, sandbox_id, "--ttl", "5m")
    assert got["host"] == "localhost" and got["user"] == "user"
    assert got["access_id"].startswith("ssh_")
    assert got["certificate"].startswith("ssh-ed25519-cert-v01@openssh.com ")
    assert got["host_key"].startswith("ssh-ed25519 ")
    assert got["host_ca"].startswith("ssh-ed25519 ")
    # The certificate names this sandbox and user only, and lives 5 minutes.
    listed = run(["ssh-keygen", "-L", "-f", got["certificate_file"]]).stdout
    assert f"{sandbox_id}:user" in listed
    valid = next(line for line in listed.splitlines() if "Valid:" in line)
    start, end = valid.split("from ")[1].split(" to ")
    span = datetime.fromisoformat(end.strip()) - datetime.fromisoformat(start.strip())
    assert 5 * 60 <= span.total_seconds() <= 6 * 60 + 1  # plus the clock-skew minute
    # The known_hosts line is the sandbox's host key at the relay's address.
    assert f"[localhost]:{got['port']} {got['host_key']}" in known_hosts(live).read_text()

    rows = live.manage(
        "shell", "-c",
        "from console.models import AuditEvent as A; "
        f"print([(e.metadata['sandbox_id'], e.actor_label[:8], e.ip) for e in A.objects.filter(action='ssh_access.created', target_id='{got['access_id']}')])",
    )  # fmt: skip
    # Who asked (the CLI's key, by its prefix) and from where, read off its Actor.
    assert rows.splitlines()[-1] == f"[('{sandbox_id}', 'api key ', '127.0.0.1')]"


def test_printed_command_works_with_system_ssh(live, sandbox_id):
    printed = live.cli("sandbox", "ssh-access", sandbox_id, "--print-command", check=True)
    args = shlex.split(printed.stdout.strip())
    assert args[0] == "ssh"
    result = run([*args, "-o", "BatchMode=yes", "sudo -n id -u; hostname; pwd"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", sandbox_id.replace("_", "-"), "/home/user"]


def test_scp_and_rsync_copy_files(live, sandbox_id, tmp_path):
    port = access(live, sandbox_id)["port"]
    local = tmp_path / "hello.txt"
    local.write_text("hello over scp\n")
    options = ssh_options(live, port)
    scp_options = [o if o != "-p" else "-P" for o in options]
    copied = run(["scp", *scp_options, str(local), "user@localhost:/workspace/hello.txt"])
    assert copied.returncode == 0, copied.stderr
    read = live.cli("sandbox", "exec", sandbox_id, "cat", "/workspace/hello.txt", check=True)
    assert read.stdout == "hello over scp\n"

    back = tmp_path / "back.txt"
    copied = run(["scp", *scp_options, "user@localhost:/workspace/hello.txt", str(back)])
    assert copied.returncode == 0 and back.read_text() == "hello over scp\n", copied.stderr

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("A")
    shell = shlex.join(["ssh", *options])
    synced = run(["rsync", "-a", "-e", shell, f"{tree}/", "user@localhost:/workspace/tree/"])
    assert synced.returncode == 0, synced.stderr
    read = live.cli("sandbox", "exec", sandbox_id, "cat", "/workspace/tree/sub/a.txt")
    assert read.stdout == "A"


def test_sftp_and_port_forwarding_for_editors(live, sandbox_id, tmp_path):
    """What an editor's remote mode does: SFTP, and a tunnel to a port inside."""
    port = access(live, sandbox_id)["port"]
    options = ssh_options(live, port)
    batch = tmp_path / "batch"
    batch.write_text("ls /etc/hostname\n")
    sftp_options = [o if o != "-p" else "-P" for o in options]
    listed = run(["sftp", *sftp_options, "-b", str(batch), "user@localhost"])
    assert listed.returncode == 0 and "/etc/hostname" in listed.stdout, listed.stderr

    live.cli("sandbox", "exec", sandbox_id, "--background", "python3", "-m", "http.server",
             "8765", "--bind", "127.0.0.1", check=True)  # fmt: skip
    local = free_port()
    tunnel = subprocess.Popen(
        ["ssh", *options, "-N", "-L", f"{local}:127.0.0.1:8765", "user@localhost"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and answer is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{local}/", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.5)
        assert answer is not None and answer.status_code == 200
        assert "Directory listing" in answer.text
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=30)


def test_expired_certificate_is_refused(live, sandbox_id, tmp_path):
    port = access(live, sandbox_id)["port"]
    principal = f"{sandbox_id}:user"
    # Control: a certificate the server's CA signs now, for this sandbox, opens it...
    fresh = sign_with_server_ca(live, tmp_path / "fresh", principal, "-1m:+5m")
    ok = run(["ssh", *ssh_options(live, port, fresh), "user@localhost", "true"])
    assert ok.returncode == 0, ok.stderr
    # ...and the same one, expired, does not.
    expired = sign_with_server_ca(live, tmp_path / "expired", principal, "20200101:20200102")
    refused = run(["ssh", *ssh_options(live, port, expired), "user@localhost", "true"])
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr


def test_the_relay_admits_nothing_once_every_access_has_expired(live, tmp_path):
    """The relay's own gate, before sshd: with no unexpired access left for the sandbox,
    even a certificate sshd would take is not carried to it."""
    sandbox = live.new_sandbox("--timeout", "900")
    try:
        port = access(live, sandbox)["port"]
        valid = sign_with_server_ca(live, tmp_path, f"{sandbox}:user", "-1m:+5m")
        assert (
            run(["ssh", *ssh_options(live, port, valid), "user@localhost", "true"]).returncode == 0
        )
        live.manage(
            "shell", "-c",
            "from datetime import timedelta; from django.utils import timezone; "
            "from console.models import SshAccess; "
            f"SshAccess.objects.filter(sandbox__public_id='{sandbox}')"
            ".update(expires_at=timezone.now() - timedelta(seconds=1))",
        )  # fmt: skip
        refused = run(["ssh", *ssh_options(live, port, valid), "-o", "ConnectTimeout=20",
                       "user@localhost", "true"])  # fmt: skip
        assert refused.returncode == 255
        assert "Permission denied" not in refused.stderr  # never reached sshd
    finally:
        live.cli("sandbox", "kill", sandbox)


def test_a_certificate_for_one_sandbox_does_not_open_another(live, sandbox_id, tmp_path):
    other = live.new_sandbox("--timeout", "900")
    try:
        other_port = access(live, other)["port"]
        mine = access(live, sandbox_id)  # the CLI's certificate file is now this sandbox's
        assert mine["port"] != other_port
        refused = run(["ssh", *ssh_options(live, other_port), "user@localhost", "true"])
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
        # Nor does it name another user of the same sandbox.
        as_root = run(["ssh", *ssh_options(live, mine["port"]), "root@localhost", "true"])
        assert as_root.returncode == 255 and "Permission denied" in as_root.stderr
        # A certificate signed for the other sandbox's principal opens only that one.
        theirs = sign_with_server_ca(live, tmp_path, f"{other}:user", "-1m:+5m")
        ok = run(["ssh", *ssh_options(live, other_port, theirs), "user@localhost", "hostname"])
        assert ok.returncode == 0 and ok.stdout.strip() == other.replace("_", "-"), ok.stderr
    finally:
        live.cli("sandbox", "kill", other)


def test_a_fork_keeps_neither_the_host_key_nor_the_principals(live, sandbox_id):
    parent = access(live, sandbox_id)
    child = json.loads(live.cli("sandbox", "fork", sandbox_id, check=True).stdout)["id"]
    try:
        parent_cert = identity(live).parent / "parent-cert.pub"
        shutil.copy(str(identity(live)) + "-cert.pub", parent_cert)
        mine = access(live, child)
        assert mine["port"] != parent["port"]
        assert mine["host_key"] != parent["host_key"]  # made in the fork, for the fork
        ok = run(
            [
                "ssh",
                *ssh_options(live, mine["port"]),
                "user@localhost",
                "ls /etc/ssh/nullspace/host",
            ]
        )
        assert ok.returncode == 0, ok.stderr
        assert all(name.startswith(child + "_") for name in ok.stdout.split()), ok.stdout
        # The parent's certificate (still valid) does not open the fork.
        refused = run(
            ["ssh", *ssh_options(live, mine["port"], parent_cert), "user@localhost", "true"]
        )
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
    finally:
        live.cli("sandbox", "kill", child)


def test_root_access_when_asked(live, sandbox_id):
    result = live.cli("ssh", sandbox_id, "--user", "root", "--", "id", "-un", input="")
    assert result.returncode == 0 and result.stdout.strip() == "root", result.stderr
    missing = live.cli("sandbox", "ssh-access", sandbox_id, "--user", "nobody2")
    assert missing.returncode != 0 and "no user nobody2" in missing.stderr


def test_sessions_survive_sshd_taking_a_new_user(live, sandbox_id):
    """Access for another user rewrites sshd's setup and restarts its listener: a session
    already open goes on, and the next connection works at once."""
    port = access(live, sandbox_id)["port"]
    session = subprocess.Popen(
        ["ssh", *ssh_options(live, port), "user@localhost", "echo started; read line; echo got $line"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert session.stdout is not None and session.stdin is not None
        assert session.stdout.readline().strip() == "started"
        fresh_user = "ssh" + sandbox_id[-6:]
        live.cli("sandbox", "exec", sandbox_id, "sudo", "useradd", "-m", "-p", "*", fresh_user,
                 check=True)  # fmt: skip
        result = live.cli("ssh", sandbox_id, "--user", fresh_user, "--", "id", "-un", input="")
        assert result.returncode == 0 and result.stdout.strip() == fresh_user, result.stderr
        session.stdin.write("hello\n")
        session.stdin.flush()
        assert session.stdout.readline().strip() == "got hello"
        assert session.wait(timeout=SSH_TIMEOUT) == 0
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()


def test_a_restarted_server_reopens_the_same_port(live, sandbox_id):
    """The printed command stays valid across a server restart (within its lifetime)."""
    printed = live.cli("sandbox", "ssh-access", sandbox_id, "--print-command", check=True)
    args = shlex.split(printed.stdout.strip())
    assert run([*args, "-o", "BatchMode=yes", "true"]).returncode == 0
    live.process.terminate()
    live.process.wait(timeout=30)
    launch(live)
    again = run([*args, "-o", "BatchMode=yes", "hostname"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == sandbox_id.replace("_", "-")


def test_another_projects_sandbox_is_not_found(live, sandbox_id):
    other_key = live.manage(
        "bootstrap", "--email", "other@example.com", "--team", "other", "--project", "x"
    )
    result = subprocess.run(
        [str(VENV_BIN / "nullspace"), "sandbox", "ssh-access", sandbox_id],
        cwd=live.data_dir, env=live.cli_env(NULLSPACE_API_KEY=other_key),
        capture_output=True, text=True, timeout=SSH_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "not found" in result.stderr.lower()


def test_bad_requests_are_refused(live, sandbox_id):
    bad_key = live.cli("sandbox", "ssh-access", sandbox_id, "--public-key", "ssh-ed25519 nope")
    assert bad_key.returncode != 0 and "public_key" in bad_key.stderr
    too_long = live.cli("sandbox", "ssh-access", sandbox_id, "--ttl", "2h")
    assert too_long.returncode != 0 and "expires_in_minutes" in too_long.stderr


def test_killing_the_sandbox_ends_access(live, tmp_path):
    doomed = live.new_sandbox("--timeout", "900")
    port = access(live, doomed)["port"]
    session = subprocess.Popen(
        ["ssh", *ssh_options(live, port), "user@localhost", "echo started; sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "started"
        live.cli("sandbox", "kill", doomed, check=True)
        session.wait(timeout=90)  # the session ends with the sandbox
        assert session.returncode != 0
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    # New connections are refused at once, though the certificate has not expired.
    refused = run(["ssh", *ssh_options(live, port), "-o", "ConnectTimeout=20",
                   "user@localhost", "true"])  # fmt: skip
    assert refused.returncode == 255
    again = live.cli("sandbox", "ssh-access", doomed)
    assert again.returncode == 3, again.stderr


def test_preview_links_still_refuse_port_22(live, sandbox_id):
    result = live.cli("sandbox", "preview-url", "create", sandbox_id, "22")
    assert result.returncode != 0 and "reserved" in result.stderr


def test_first_accesses_at_once_share_one_sshd_and_port(live):
    """Two first accesses to a fresh sandbox at the same time: one host key, one port,
    and both certificates open it."""
    from concurrent.futures import ThreadPoolExecutor

    sandbox = live.new_sandbox("--timeout", "900")
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: access(live, sandbox), range(2)))
        assert answers[0]["port"] == answers[1]["port"]
        assert answers[0]["host_key"] == answers[1]["host_key"]
        result = live.cli("ssh", sandbox, "--", "pgrep", "-c", "-x", "sshd", input="")
        assert result.returncode == 0, result.stderr
        # One listener, plus the two processes of this session.
        assert int(result.stdout.strip()) <= 3, result.stdout
    finally:
        live.cli("sandbox", "kill", sandbox)


def test_asking_again_reuses_sshd_and_port(live, sandbox_id):
    first = access(live, sandbox_id)
    second = access(live, sandbox_id)
    assert second["port"] == first["port"] and second["host_key"] == first["host_key"]
    assert second["access_id"] != first["access_id"]
    assert second["certificate"] != first["certificate"]
