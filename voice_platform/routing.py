"""WebSocket routes: the browser's live sessions and phone calls' media streams."""

from sessions.routing import websocket_urlpatterns as session_routes
from telephony.routing import websocket_urlpatterns as phone_routes

websocket_urlpatterns = [*session_routes, *phone_routes]

__all__ = ["websocket_urlpatterns"]
