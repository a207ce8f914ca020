"""WebSocket routes. The live bridge (sessions/) registers its consumer here."""

from typing import Any

websocket_urlpatterns: list[Any] = []
