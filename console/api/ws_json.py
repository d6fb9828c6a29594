"""JSON WebSocket consumers for /v1 that answer a malformed frame instead of dying.

Channels' AsyncJsonWebsocketConsumer lets a frame that is not JSON raise, which closes
the socket with 1011. The client expects `{"type": "error", "message": "invalid message
..."}` and a socket that stays usable, so that is what a bad frame gets here.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

MAX_ECHO = 80  # how much of a bad frame the error quotes


class TolerantJsonConsumer(AsyncJsonWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self.send_invalid("binary frames are not accepted; send JSON text")
            return
        try:
            content = json.loads(text_data)
        except json.JSONDecodeError as exc:
            await self.send_invalid(f"not JSON ({exc.msg} at character {exc.pos})")
            return
        if not isinstance(content, dict):
            await self.send_invalid(f"expected a JSON object, got {type(content).__name__}")
            return
        await self.receive_json(content, **kwargs)

    async def send_invalid(self, why: str) -> None:
        await self.send_json({"type": "error", "message": f"invalid message: {why}"})
