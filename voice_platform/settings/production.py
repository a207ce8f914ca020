"""Production: DEBUG off, HTTPS everywhere. Differs from base only through the environment.

``python manage.py check --deploy --fail-level WARNING`` passes with the variables listed in
docs/configuration.md ("Production").
"""

import os

os.environ.setdefault("DEBUG", "0")

from django.core.exceptions import ImproperlyConfigured

from voice_platform.settings.base import *  # noqa: F403
from voice_platform.settings.base import SECRET_KEY
from voice_platform.settings.env import env_bool, env_int, env_str, secret_key_problem

# The key signs sessions and password resets and derives the field encryption key: a
# placeholder copied from an example file, or Django's development key, must stop the server.
if _problem := secret_key_problem(SECRET_KEY):
    raise ImproperlyConfigured(
        f"SECRET_KEY {_problem}: set SECRET_KEY, or SECRET_KEY_FILE to a file holding it, to a "
        "random string, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )

# The SQLite default is for development: in production a missing (or misspelt) DATABASE_URL
# must stop the server, not quietly put the data in a file inside the container.
if not env_str("DATABASE_URL").strip():
    raise ImproperlyConfigured(
        "DATABASE_URL must be set in production, e.g. postgres://user:password@host:5432/db "
        "(the SQLite default is for development)."
    )

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Health probes come over plain HTTP from the orchestrator.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
