"""Project core: settings, routing, the Celery app, tenancy, health.

Not called ``platform``: a top-level package of that name shadows the standard library's
``platform`` module, which ``uuid`` imports while Django starts.
"""

from voice_platform.celery import app as celery_app

__all__ = ["celery_app"]
