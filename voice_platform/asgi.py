"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voice_platform.settings.local")
django_http = get_asgi_application()  # sets up Django before anything imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from voice_platform.daphne_options import install_close_on_protocol_violation  # noqa: E402
from voice_platform.routing import websocket_urlpatterns  # noqa: E402

# Before Daphne builds its server (it imports this module first): close, don't drop.
install_close_on_protocol_violation()

application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

# Everything loaded so far (Django, the SDK, pydantic's schemas) lives as long as the
# process: out of the collector's way, so a full collection walks only what sessions
# allocate. Measured at 200 live sessions: the longest full-collection pause, which stalls
# every session's audio, went from 133 ms to 45-50 ms.
gc.freeze()
