"""`.../warm-pools/live/ws`: says `changed` whenever one of the project's pools did
(console/warm_pools/live.py sends; console/live_ws.py does the access checks)."""

from __future__ import annotations

from typing import Any

from console.live_ws import LiveConsumer
from console.models import Project
from console.warm_pools import live


class WarmPoolsLiveConsumer(LiveConsumer):
    topic = "warm_pools"

    def group(self, project: Project) -> str:
        return live.group(project.public_id)

    async def warm_pools_changed(self, message: dict[str, Any]) -> None:
        await self.changed()
