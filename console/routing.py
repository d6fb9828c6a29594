"""WebSocket URL patterns: /v1 channels (Bearer auth, no Origin check, as the CLI sends
none) and console live views (session auth behind an Origin check)."""

from __future__ import annotations

api_websocket_urlpatterns: list = []
console_websocket_urlpatterns: list = []
