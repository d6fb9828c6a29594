"""sshd inside a sandbox, started on demand at its first SSH access (docs/ssh.md).

It trusts only the server's CA (TrustedUserCAKeys), and only certificates naming this
sandbox and the login user (`AuthorizedPrincipalsFile` holds `<sandbox id>:<user>`);
no passwords, no authorized_keys. Its host key is made inside the sandbox (the private
half never leaves it) under a name holding the sandbox id, so a fork (which copies the
files) makes a key of its own; the server signs a host certificate for it.

sshd is started through `sudo` by the sandbox's default user: a process the runtime
starts as root carries no_new_privs, which every login session would inherit, and
`sudo` inside an SSH session would then fail (docs/runtime.md).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from console.errors import DomainError
from console.models import Sandbox
from console.runtime import get_driver
from console.runtime.base import ExecRequest, FileStore, RuntimeError_
from console.runtime.image import DEFAULT_USER
from console.sandboxes import service as sandboxes
from console.ssh import ca

CONFIG_DIR = "/etc/ssh/nullspace"
HOST_CERT_DAYS = 365
SETUP_TIMEOUT_SECONDS = 60
BANNER_TIMEOUT_SECONDS = 5.0
START_WAIT_SECONDS = 15.0
MAX_CONFIG_FILE_BYTES = 16 * 1024
# Exit codes of the scripts below that are the caller's mistake, not ours.
NO_SUCH_USER = 3

# Makes the host key if missing; prints its public half. $1 = sandbox id.
HOST_KEY_SCRIPT = f"""set -eu
key={CONFIG_DIR}/host/"$1"_ed25519_key
umask 022
mkdir -p {CONFIG_DIR}/host
exec 9>/run/nullspace-sshd.lock
flock 9
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C "$1" -f "$key"
cat "$key.pub"
"""

# $1 CA line, $2 host certificate line, $3 sandbox id, $4 login user.
START_SCRIPT = f"""set -eu
ca=$1 cert=$2 sb=$3 user=$4 d={CONFIG_DIR}
id -u "$user" >/dev/null 2>&1 || {{ echo "there is no user $user in this sandbox" >&2; exit {NO_SUCH_USER}; }}
umask 022
mkdir -p "$d/principals" "$d/host" /run/sshd
exec 9>/run/nullspace-sshd.lock
flock 9
key="$d/host/${{sb}}_ed25519_key"
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C "$sb" -f "$key"
printf '%s\\n' "$ca" > "$d/user_ca.pub"
printf '%s\\n' "$cert" > "$key-cert.pub"
# Host keys and principals of another sandbox (files a fork copied) must not serve here.
for f in "$d"/host/*; do
  case "$f" in "$d/host/${{sb}}_"*) ;; *) rm -f "$f" ;; esac
done
for f in "$d"/principals/*; do
  [ -e "$f" ] || continue
  grep -qxF "$sb:$(basename "$f")" "$f" || rm -f "$f"
done
printf '%s:%s\\n' "$sb" "$user" > "$d/principals/$user"
cat > "$d/sshd_config" <<EOF
Port 22
HostKey $key
HostCertificate $key-cert.pub
TrustedUserCAKeys $d/user_ca.pub
AuthorizedPrincipalsFile $d/principals/%u
AuthorizedKeysFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin prohibit-password
PermitUserEnvironment no
UsePAM no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding yes
PrintMotd no
MaxAuthTries 3
LoginGraceTime 30
ClientAliveInterval 30
ClientAliveCountMax 4
PidFile /run/nullspace-sshd.pid
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
# A running listener is replaced (sessions it started are processes of their own and
# go on); the new one reads the config and host certificate written above.
pid=$(cat /run/nullspace-sshd.pid 2>/dev/null || true)
if [ -n "$pid" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = sshd ]; then
  kill "$pid"
  tries=0
  while kill -0 "$pid" 2>/dev/null && [ $tries -lt 100 ]; do sleep 0.05; tries=$((tries + 1)); done
fi
/usr/sbin/sshd -f "$d/sshd_config"
"""


@dataclass(frozen=True)
class SshdReady:
    host_key: str  # the sandbox's host public key line (for known_hosts)


def principal(sandbox: Sandbox, user: str) -> str:
    return f"{sandbox.public_id}:{user}"


def ensure_sshd(sandbox: Sandbox, user: str, *, relay_host: str) -> SshdReady:
    """sshd running in the sandbox, trusting the CA for `user`; its host key."""
    ready = _already_set_up(sandbox, user)
    if ready is not None:
        return ready
    host_key = _host_public_key(sandbox)
    now = timezone.now()
    parsed = ca.parse_public_key(host_key)
    certificate = ca.sign_host_certificate(
        parsed.key,
        principals=[relay_host, sandbox.public_id],
        key_id=f"{sandbox.public_id} host",
        valid_after=now - timedelta(seconds=ca.CLOCK_SKEW_SECONDS),
        valid_before=now + timedelta(days=HOST_CERT_DAYS),
    )
    _as_root(sandbox, START_SCRIPT, [ca.ca_public_line(), certificate, sandbox.public_id, user])
    # sshd forks into the background before it listens: answer once it does.
    deadline = time.monotonic() + START_WAIT_SECONDS
    while not _sshd_answers(sandbox):
        if time.monotonic() > deadline:
            raise DomainError("runtime_error", "sshd did not start listening in the sandbox")
        time.sleep(0.05)
    return SshdReady(host_key=host_key)


def _already_set_up(sandbox: Sandbox, user: str) -> SshdReady | None:
    """The fast path of every access after the first: the files already say what the
    start script would write, and sshd answers; no process is started in the sandbox."""
    files = get_driver().files(sandbox.runtime_id)
    sb = sandbox.public_id
    expected = {
        f"{CONFIG_DIR}/principals/{user}": principal(sandbox, user),
        f"{CONFIG_DIR}/user_ca.pub": ca.ca_public_line(),
    }
    for path, content in expected.items():
        if _read(files, path) != content:
            return None
    host_key = " ".join(_read(files, f"{CONFIG_DIR}/host/{sb}_ed25519_key.pub").split()[:2])
    try:
        ca.parse_public_key(host_key)  # it goes into the client's known_hosts
    except ca.InvalidPublicKey:
        return None
    if not _sshd_answers(sandbox):
        return None
    return SshdReady(host_key=host_key)


def _read(files: FileStore, path: str) -> str:
    try:
        with files.open_read(path) as handle:
            return handle.read(MAX_CONFIG_FILE_BYTES).decode(errors="replace").strip()
    except (RuntimeError_, OSError):
        return ""


def _sshd_answers(sandbox: Sandbox) -> bool:
    try:
        host, port = get_driver().upstream(sandbox.runtime_id, 22)
        with socket.create_connection((host, port), timeout=BANNER_TIMEOUT_SECONDS) as conn:
            conn.settimeout(BANNER_TIMEOUT_SECONDS)
            return conn.recv(64).startswith(b"SSH-2.0-")
    except (RuntimeError_, OSError):
        return False


def _host_public_key(sandbox: Sandbox) -> str:
    out = _as_root(sandbox, HOST_KEY_SCRIPT, [sandbox.public_id]).strip()
    line = " ".join(out.splitlines()[-1].split()[:2]) if out else ""
    try:
        ca.parse_public_key(line)
    except ca.InvalidPublicKey:
        raise DomainError("runtime_error", "The sandbox did not produce an SSH host key") from None
    return line


def _as_root(sandbox: Sandbox, script: str, args: list[str]) -> str:
    request = ExecRequest(
        command="sudo",
        args=["-n", "/bin/sh", "-c", script, "sh", *args],
        user=DEFAULT_USER,
        cwd="/",
        timeout_secs=SETUP_TIMEOUT_SECONDS,
        stdin=False,
    )
    result = sandboxes.run_command(sandbox, request)
    if result.exit_code == NO_SUCH_USER:
        raise DomainError("invalid_request", result.stderr.strip())
    if result.exit_code != 0:
        detail = (result.stderr or result.stdout).strip()[-500:]
        if "sudo" in detail and "password" in detail:
            raise DomainError(
                "sandbox_not_ready",
                f"SSH needs passwordless sudo for {DEFAULT_USER} in the sandbox: {detail}",
            )
        raise DomainError("runtime_error", f"Starting sshd in the sandbox failed: {detail}")
    return result.stdout
