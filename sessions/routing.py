from django.urls import path

from sessions.auth import resolve_tenant
from sessions.consumers import LiveConsumer
from voice_platform.tenancy.channels import TenantMiddleware

websocket_urlpatterns = [
    path("ws/v1/live", TenantMiddleware(LiveConsumer.as_asgi(), resolve_tenant)),
]
