"""Standard Webhooks signatures (docs/webhooks.md): HMAC-SHA256 over
`{webhook-id}.{webhook-timestamp}.{body}` with the key inside the `whsec_` secret,
sent as `webhook-signature: v1,<base64>`."""

from __future__ import annotations

import base64
import hashlib
import hmac

from console.webhooks.secrets import signing_key

# A receiver refuses timestamps further than this from its clock (replay window).
TOLERANCE_SECONDS = 300


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: int) -> bool:
    """What a receiver does: constant-time compare against every `v1,` signature given
    (several appear while a secret is rotated), within the timestamp tolerance."""
    try:
        message_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        given = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in given)
