"""Every secret the product makes or checks: API keys, invitations, traffic tokens, preview tokens.

Random secrets are stored as (lookup prefix, HMAC-SHA256 digest) and compared in
constant time. Preview tokens are HMAC-signed values that name a grant and a token
kind; they are never stored. Nothing here logs or returns a raw secret except the
`raw` field of a freshly minted one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.core import signing

# Prefix per kind, so a leaked value can be identified on sight.
API_KEY = "nsk_"
INVITATION = "nsi_"
TRAFFIC = "nst_"
UPLOAD_URL = "nsu_"

LOOKUP_PREFIX_LENGTH = 12


@dataclass(frozen=True)
class NewSecret:
    raw: str = field(repr=False)
    prefix: str
    digest: str


def _digest(raw: str) -> str:
    key = hashlib.sha256(("nullspace.secrets:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


def new_secret(kind: str, nbytes: int = 30) -> NewSecret:
    """A random secret `<kind><base64url>`: raw value, 12-character lookup prefix and digest."""
    raw = kind + secrets.token_urlsafe(nbytes)
    return NewSecret(raw=raw, prefix=raw[:LOOKUP_PREFIX_LENGTH], digest=_digest(raw))


def lookup_prefix(raw: str) -> str:
    return raw[:LOOKUP_PREFIX_LENGTH]


def secret_matches(raw: str, digest: str) -> bool:
    return bool(digest) and hmac.compare_digest(_digest(raw), digest)


# --- Preview tokens -----------------------------------------------------------------

# Token kinds: one salt each, so a token minted for one kind never validates as another.
DIRECT_HTTP = "direct-http"
DIRECT_WS = "direct-ws"
PROXY_HTTP = "proxy-http"
PROXY_WS = "proxy-ws"
COOKIE = "cookie"
PREVIEW_KINDS = (DIRECT_HTTP, DIRECT_WS, PROXY_HTTP, PROXY_WS, COOKIE)
_PREVIEW_PREFIX = {
    DIRECT_HTTP: "nsg_",
    DIRECT_WS: "nsgw_",
    PROXY_HTTP: "nsp_",
    PROXY_WS: "nspw_",
    COOKIE: "nsc_",
}


def _preview_signer(kind: str) -> signing.Signer:
    return signing.Signer(
        key=settings.PREVIEW_SIGNING_KEY, salt=f"nullspace.preview.{kind}", sep="."
    )


def sign_preview_token(grant_id: str, kind: str) -> str:
    return _PREVIEW_PREFIX[kind] + _preview_signer(kind).sign(grant_id)


def read_preview_token(token: str, kind: str) -> str | None:
    """The grant id a token of this kind names, or None when it is not a valid one."""
    prefix = _PREVIEW_PREFIX[kind]
    if not token.startswith(prefix):
        return None
    try:
        return _preview_signer(kind).unsign(token[len(prefix) :])
    except signing.BadSignature:
        return None


def preview_token_kind(token: str) -> str | None:
    """Which kind a token claims to be (by prefix), before checking its signature."""
    # Longest prefixes first: nsgw_ must not be read as nsg_.
    for kind, prefix in sorted(_PREVIEW_PREFIX.items(), key=lambda item: -len(item[1])):
        if token.startswith(prefix):
            return kind
    return None


# --- Self-authenticating signed URLs (file downloads and uploads) -------------------


def sign_url_payload(payload: dict, purpose: str) -> str:
    return signing.dumps(payload, salt=f"nullspace.url.{purpose}", compress=True)


def read_url_payload(token: str, purpose: str, max_age: int) -> dict | None:
    try:
        return signing.loads(token, salt=f"nullspace.url.{purpose}", max_age=max_age)
    except signing.BadSignature:
        return None
