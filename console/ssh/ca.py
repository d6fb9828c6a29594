"""The server's SSH certificate authority (docs/ssh.md).

One Ed25519 key, generated once into DATA_DIR (0600) unless SSH_CA_KEY_FILE names a
key to share between servers on one database. It signs two kinds of certificate:
short-lived user certificates for the keys clients present, and host certificates
for the sandboxes' own host keys. Sandboxes' sshd trusts this key and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import ssh
from django.conf import settings

from console.errors import DomainError

MAX_PUBLIC_KEY_CHARS = 16 * 1024
MIN_RSA_BITS = 2048
# What a user certificate lets a session do: a terminal and port forwarding (editors'
# remote modes tunnel through it); no X11, no agent forwarding, no ~/.ssh/rc.
USER_EXTENSIONS = (b"permit-port-forwarding", b"permit-pty")
# Clocks of client, server and sandbox may differ a little.
CLOCK_SKEW_SECONDS = 60


class InvalidPublicKey(DomainError):
    """The presented public key cannot be certified (parse error, type, size)."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_request", message)


@dataclass(frozen=True)
class PresentedKey:
    key: ssh.SSHCertPublicKeyTypes
    type_name: str
    fingerprint: str  # SHA256:..., as ssh-keygen -l prints it


def ca_key_path() -> Path:
    configured = getattr(settings, "SSH_CA_KEY_FILE", "")
    return Path(configured) if configured else Path(settings.DATA_DIR) / "ssh_ca_ed25519"


@cache
def _load_ca(path: Path) -> ed25519.Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = _create_ca(path)
    key = serialization.load_ssh_private_key(data, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise RuntimeError(f"{path} is not an Ed25519 OpenSSH private key")
    return key


def _create_ca(path: Path) -> bytes:
    data = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: when two processes start at once, the first key written wins.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data


def ca_private_key() -> ed25519.Ed25519PrivateKey:
    return _load_ca(ca_key_path())


def ca_public_line() -> str:
    """The CA's public key as an OpenSSH line (for TrustedUserCAKeys, @cert-authority)."""
    return public_line(ca_private_key().public_key(), comment="nullspace-ssh-ca")


def public_line(key: ssh.SSHPublicKeyTypes, *, comment: str = "") -> str:
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return (line.decode() + (f" {comment}" if comment else "")).strip()


def fingerprint(key: ssh.SSHPublicKeyTypes) -> str:
    blob = base64.b64decode(public_line(key).split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse_public_key(text: object) -> PresentedKey:
    """A client's public key line (`ssh-ed25519 AAAA... comment`), checked."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidPublicKey("public_key must be an OpenSSH public key line")
    if len(text) > MAX_PUBLIC_KEY_CHARS:
        raise InvalidPublicKey(f"public_key is longer than {MAX_PUBLIC_KEY_CHARS} characters")
    line = text.strip()
    if "\n" in line:
        raise InvalidPublicKey("public_key must be a single key line")
    if "-cert-v01@openssh.com" in line.split()[0]:
        raise InvalidPublicKey("public_key is a certificate; send the plain public key")
    try:
        key = serialization.load_ssh_public_key(line.encode())
    except (ValueError, TypeError, IndexError) as exc:
        raise InvalidPublicKey(f"public_key is not a valid OpenSSH public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidPublicKey(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise InvalidPublicKey("public_key must be an Ed25519, ECDSA or RSA key")
    return PresentedKey(key=key, type_name=line.split()[0], fingerprint=fingerprint(key))


def sign_user_certificate(
    key: ssh.SSHCertPublicKeyTypes,
    *,
    principals: list[str],
    key_id: str,
    valid_after: datetime,
    valid_before: datetime,
    serial: int | None = None,
) -> str:
    """A user certificate line for `key`, valid for `principals` in [after, before)."""
    builder = (
        ssh.SSHCertificateBuilder()
        .public_key(key)
        .serial(serial if serial is not None else new_serial())
        .type(ssh.SSHCertificateType.USER)
        .key_id(key_id.encode())
        .valid_principals([p.encode() for p in principals])
        .valid_after(int(valid_after.timestamp()))
        .valid_before(int(valid_before.timestamp()))
    )
    for extension in USER_EXTENSIONS:
        builder = builder.add_extension(extension, b"")
    return _line(builder.sign(ca_private_key()))


def sign_host_certificate(
    key: ssh.SSHCertPublicKeyTypes,
    *,
    principals: list[str],
    key_id: str,
    valid_after: datetime,
    valid_before: datetime,
) -> str:
    builder = (
        ssh.SSHCertificateBuilder()
        .public_key(key)
        .serial(new_serial())
        .type(ssh.SSHCertificateType.HOST)
        .key_id(key_id.encode())
        .valid_principals([p.encode() for p in principals])
        .valid_after(int(valid_after.timestamp()))
        .valid_before(int(valid_before.timestamp()))
    )
    return _line(builder.sign(ca_private_key()))


def new_host_key() -> tuple[str, str]:
    """A fresh Ed25519 host key: (OpenSSH private key text, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return private, public_line(key.public_key())


def new_serial() -> int:
    return secrets.randbits(63)


def _line(certificate: ssh.SSHCertificate) -> str:
    return certificate.public_bytes().decode().strip()
