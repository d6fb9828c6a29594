"""WebSocket /v1/volumes/{id}/ws: file watches of a volume (docs/api.md §2.7).

The same frames as a sandbox's watch socket (console/sandboxes/api/file_watch_ws.py); another
project's volume, or none, is refused in answer to the first watch frame, echoing its id.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from console.api.auth import READ
from console.api.ws_scopes import ChannelScopes, ScopedSocket
from console.errors import DomainError
from console.sandboxes.api.file_watch_ws import FileWatches
from console.volumes import service as volumes


class VolumeSocket(ScopedSocket):
    channels = {None: ChannelScopes(READ, {"file_watch": READ})}
    watches: FileWatches | None = None

    async def opened(self) -> None:
        volume_id = self.scope["url_route"]["kwargs"]["volume_id"]
        try:
            volume = await database_sync_to_async(volumes.get_volume)(self.project, volume_id)
            files = await database_sync_to_async(volumes.files)(volume)
        except DomainError as error:
            self.watches = FileWatches(volume_id, self.send_json, self.close, error.message)
            return
        # The watch code takes a sandbox id or a file store (console/sandbox_files.store).
        self.watches = FileWatches(files, self.send_json, self.close)

    async def disconnect(self, code: int) -> None:
        if self.watches is not None:
            await self.watches.stop_all()

    async def handle(self, kind: str, content: dict[str, Any]) -> None:
        if self.watches is not None:
            await self.watches.start(content)
