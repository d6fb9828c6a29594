"""Bearer authentication for /v1 WebSockets: the CLI sends `Authorization: Bearer` on
the handshake (docs/api.md §1.2). A consumer that gets None closes before accepting,
which daphne answers with 403, and the client reports `unauthorized`."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from console.api.auth import authenticate_key, bearer_token
from console.errors import DomainError
from console.models import ApiKey


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


@database_sync_to_async
def _authenticate(raw: str | None) -> ApiKey | None:
    try:
        return authenticate_key(raw)
    except DomainError:
        return None


async def scope_api_key(scope) -> ApiKey | None:
    return await _authenticate(bearer_token(_header(scope, b"authorization")))


def query_param(scope, name: str) -> str | None:
    values = parse_qs((scope.get("query_string") or b"").decode("latin-1")).get(name)
    return values[0] if values else None
