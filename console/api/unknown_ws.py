"""The last WebSocket route: a path nothing else serves is refused with a type, never a
server error. The socket is accepted only to say why: one `error` frame with the
contract's `not_found` code, then close code 4404 with reason `not_found` (daphne does
not pass close reasons on; the frame carries the code for its clients)."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

CLOSE_NOT_FOUND = 4404


class UnknownSocket(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send_json(
            {
                "type": "error",
                "code": "not_found",
                "message": f"No WebSocket route {self.scope.get('path', '')}",
            }
        )
        await self.close(code=CLOSE_NOT_FOUND, reason="not_found")

    async def receive_json(self, content: object, **kwargs: object) -> None:
        return None  # closing already; anything the client sent meanwhile is ignored
