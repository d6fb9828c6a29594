"""Signing secrets: generated in the Standard Webhooks form (`whsec_` + base64 of random
bytes), validated, and kept encrypted at rest with Fernet under WEBHOOK_ENCRYPTION_KEY.

WEBHOOK_ENCRYPTION_KEY may list several keys separated by commas: the first encrypts,
every one decrypts, so a key can be rotated without losing existing secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from console.errors import DomainError

PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class SecretError(DomainError):
    """A signing secret that cannot be used: one a client sent that is not a `whsec_`
    secret (invalid_request), or one stored that this server cannot decrypt (its
    WEBHOOK_ENCRYPTION_KEY: internal_error)."""


def _refused(message: str) -> SecretError:
    return SecretError("invalid_request", message, details={"field": "signing_secret"})


def new_signing_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; SecretError when it is not one."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise _refused("signing_secret must start with whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise _refused("signing_secret must be whsec_ followed by valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise _refused(
            f"signing_secret must hold {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes of key "
            f"(it holds {len(key)})"
        )
    return key


def _fernet_key(material: str) -> bytes:
    # Any string from settings becomes a 32-byte Fernet key; a domain label keeps it
    # distinct from other uses of the same material.
    digest = hashlib.sha256(b"nullspace webhook secrets\0" + material.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@cache
def _box(configured: str) -> MultiFernet:
    keys = [part.strip() for part in configured.split(",") if part.strip()]
    if not keys:
        raise SecretError("internal_error", "WEBHOOK_ENCRYPTION_KEY is empty")
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def encrypt(secret: str) -> str:
    return _box(settings.WEBHOOK_ENCRYPTION_KEY).encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _box(settings.WEBHOOK_ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretError(
            "internal_error", "the signing secret cannot be decrypted with WEBHOOK_ENCRYPTION_KEY"
        ) from None
