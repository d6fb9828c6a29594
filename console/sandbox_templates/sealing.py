"""Build secrets at rest: encrypted (Fernet, the server's WEBHOOK_ENCRYPTION_KEY material
under its own label) on the build row only until the build ends, so a worker in another
process can run it; never in the request kept on the row, a log line or a response."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@cache
def _box(configured: str) -> MultiFernet:
    keys = [part.strip() for part in configured.split(",") if part.strip()]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    hashlib.sha256(b"template secrets\0" + k.encode()).digest()
                )
            )
            for k in keys
        ]
    )


def seal(secrets: list[dict[str, str]]) -> str:
    if not secrets:
        return ""
    return _box(settings.WEBHOOK_ENCRYPTION_KEY).encrypt(json.dumps(secrets).encode()).decode()


def unseal(token: str) -> list[dict[str, str]]:
    if not token:
        return []
    try:
        return list(json.loads(_box(settings.WEBHOOK_ENCRYPTION_KEY).decrypt(token.encode())))
    except (InvalidToken, ValueError):
        return []
