"""The Celery app. Configured from Django settings (``CELERY_*``)."""

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voice_platform.settings.local")

app = Celery("voice_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(loglevel: int | None = None, **_: Any) -> None:
    """Workers log like the server (``LOGGING``: JSON or console, ids, redaction): with this
    receiver connected Celery leaves the root logger alone instead of installing its own
    format. The worker logs at the more verbose of ``LOG_LEVEL`` and its ``-l`` flag (tools
    wait for its INFO "ready." line even where ``LOG_LEVEL`` is WARNING)."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if loglevel is not None and loglevel < root.level:
        root.setLevel(loglevel)
