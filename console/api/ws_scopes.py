"""The key scope every /v1 WebSocket channel and message needs, in one declaration.

A consumer lists its channels (`?channel=` values; None for a socket without one) and,
per channel, the scope to open it and the scope of each message type it handles.
`ScopedSocket` authenticates the handshake, refuses an undeclared channel, takes a
rate-limit token for the start and for every frame, and hands a frame on only when
the key's scope covers it: a read-only key may follow output and watch files, never
start, write to or kill anything. A message type not declared is never handled (the
contract says unknown types are ignored). tests/console/test_api_scope_guard.py fails
on a routed consumer without these declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from channels.db import database_sync_to_async

from console.api.auth import READ, WRITE, check_rate_limit
from console.api.errors import ApiError
from console.api.json_body import MAX_DEPTH, check_tree
from console.api.ws_auth import query_param, scope_api_key
from console.api.ws_json import TolerantJsonConsumer
from console.errors import DomainError
from console.models import ApiKey, KeyScope

# Private close codes (4000-4999): the same numbers as the HTTP statuses they stand for.
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
# pty_input carries keystrokes and pastes, file frames a path: 1 MiB is plenty.
MAX_FRAME_CHARS = 1024 * 1024


@dataclass(frozen=True)
class ChannelScopes:
    """What a channel needs: `connect` to open it, `messages[type]` for each frame."""

    connect: str = READ
    messages: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for scope in (self.connect, *self.messages.values()):
            if scope not in (READ, WRITE):
                raise ValueError(f"unknown key scope {scope!r}")


def key_allows(key: ApiKey, scope: str) -> bool:
    return scope == READ or key.scope == KeyScope.FULL


@database_sync_to_async
def _take_token(key: ApiKey) -> ApiError | None:
    try:
        check_rate_limit(key)
    except ApiError as error:
        return error
    return None


class ScopedSocket(TolerantJsonConsumer):
    """Base of every /v1 WebSocket consumer; subclasses declare `channels` and implement
    `opened()` and `handle(kind, content)`."""

    channels: ClassVar[Mapping[str | None, ChannelScopes]]
    api_key: ApiKey
    channel: str | None
    ready = False  # set once the channel is open, allowed and loaded

    async def connect(self) -> None:
        key = await scope_api_key(self.scope)
        if key is None:
            await self.close()  # before accept: a 403 on the handshake
            return
        self.api_key = key
        self.project = key.project
        self.channel = query_param(self.scope, "channel")
        declared = self.channels.get(self.channel)
        await self.accept()
        if declared is None:
            await self.refuse(
                "invalid_request",
                f"The channel={self.channel} WebSocket channel is not supported by this server",
            )
            return
        if not key_allows(key, declared.connect):
            await self.refuse("permission_denied", "This API key is read-only", CLOSE_FORBIDDEN)
            return
        limited = await _take_token(key)
        if limited is not None:
            await self.refuse(limited.code, limited.message, CLOSE_RATE_LIMITED)
            return
        await self.opened()
        self.ready = True

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if not self.ready:
            return
        if text_data is not None and len(text_data) > MAX_FRAME_CHARS:
            await self.send_invalid(f"frames are at most {MAX_FRAME_CHARS} characters")
            return
        try:
            await super().receive(text_data, bytes_data, **kwargs)
        except RecursionError:
            await self.send_invalid(f"nested deeper than {MAX_DEPTH} levels")

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not self.ready:
            return
        try:
            check_tree(content)  # NUL, lone surrogates, NaN, depth: as for HTTP bodies
        except DomainError as error:
            await self.deny(content, error.code, error.message)
            return
        kind = content.get("type")
        if not isinstance(kind, str):
            return
        needed = self.channels[self.channel].messages.get(kind)
        if needed is None:
            return  # not declared: never handled
        limited = await _take_token(self.api_key)
        if limited is not None:
            await self.deny(content, limited.code, limited.message)
            return
        if not key_allows(self.api_key, needed):
            await self.deny(
                content, "permission_denied", f"This API key is read-only: {kind} needs full access"
            )
            return
        await self.handle(kind, content)

    async def deny(self, content: dict[str, Any], code: str, message: str) -> None:
        """Refuse one frame, echoing its id so the client matches the answer."""
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(content.get("id"), str):
            frame["id"] = content["id"]
        await self.send_json(frame)

    async def refuse(self, code: str, message: str, close_code: int = 1000) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
        await self.close(code=close_code)

    async def opened(self) -> None:
        """The channel is open and allowed: load what it works on."""

    async def handle(self, kind: str, content: dict[str, Any]) -> None:
        raise NotImplementedError
