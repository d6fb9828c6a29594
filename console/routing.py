"""WebSocket URL patterns: /v1 channels (Bearer auth, no Origin check, as the CLI sends
none) and console live views (session auth behind an Origin check)."""

from __future__ import annotations

from django.urls import path, re_path

from console.api.unknown_ws import UnknownSocket
from console.live_ws import GrantsLiveConsumer, SandboxLiveConsumer
from console.sandboxes.api.exec_ws import SandboxSocket
from console.sandboxes.api.lifecycle_ws import LifecycleSocket
from console.sandboxes.api.monitor_ws import MonitorSocket
from console.sandboxes.consumers import SandboxExecConsumer
from console.volumes.api.ws import VolumeSocket
from console.warm_pools.live_ws import WarmPoolsLiveConsumer

_project = "t/<slug:team_slug>/p/<slug:project_slug>/"

api_websocket_urlpatterns: list = [
    path("v1/sandboxes/<str:sandbox_id>/ws", SandboxSocket.as_asgi()),
    path("v1/lifecycle/ws", LifecycleSocket.as_asgi()),
    path("v1/volumes/<str:volume_id>/ws", VolumeSocket.as_asgi()),
    path("v1/sandboxes/<str:sandbox_id>/lifecycle/ws", LifecycleSocket.as_asgi()),
    path("v1/monitor/ws", MonitorSocket.as_asgi()),
]
console_websocket_urlpatterns: list = [
    path(
        "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/exec/ws",
        SandboxExecConsumer.as_asgi(),
    ),
    path(_project + "sandboxes/<str:sandbox_id>/live/ws", SandboxLiveConsumer.as_asgi()),
    path(_project + "previews/live/ws", GrantsLiveConsumer.as_asgi()),
    path(_project + "sandboxes/<str:sandbox_id>/previews/live/ws", GrantsLiveConsumer.as_asgi()),
    path(_project + "warm-pools/live/ws", WarmPoolsLiveConsumer.as_asgi()),
]
# Each router ends with this: an unknown path gets a typed refusal, not a server error.
unknown_websocket_route = re_path(r"^.*$", UnknownSocket.as_asgi())
