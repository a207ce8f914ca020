"""Settings shared by every environment. Everything that differs comes from the environment.

See docs/configuration.md for every variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from voice_platform.settings.env import (
    dev_secret_key,
    env_bool,
    env_choice,
    env_file,
    env_float,
    env_https_url,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_redis_url,
    env_secret_file,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

# SECRET_KEY_FILE: a file holding the key (read even when SECRET_KEY is set, so a bad path
# is found at start-up; SECRET_KEY wins).
_SECRET_KEY_FROM_FILE = env_secret_file("SECRET_KEY_FILE")
SECRET_KEY = env_str("SECRET_KEY") or _SECRET_KEY_FROM_FILE
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off, or SECRET_KEY_FILE name a file "
            "holding it (see docs/configuration.md)."
        )
    SECRET_KEY = dev_secret_key(VAR_DIR)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "voice_platform.tenancy.admin_config.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from here, not a CDN
    "channels",
    "axes",
    "voice_platform.tenancy",
    "voice_platform.live_emulator",
    "agents",
    "tools",
    "sessions.apps.VoiceSessionsConfig",
    "playground",
    "analytics",
    "integrations",
    "loadtest",
    "telephony",
]

MIDDLEWARE = [
    # First: health probes answer before host validation and the HTTPS redirect.
    "voice_platform.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the browser SDK (static/voice_agent/) with DEBUG off too, with CORS for the
    # widget on tenants' sites; from the app directories, so it works without collectstatic.
    "voice_platform.static_serving.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login that axes flagged as locked out into the lockout page (429).
    "axes.middleware.AxesMiddleware",
    # Last, so it sees what views raise first: PostgreSQL/Redis down is a 503, not a 500.
    "voice_platform.outages.OutageMiddleware",
]

ROOT_URLCONF = "voice_platform.urls"
ASGI_APPLICATION = "voice_platform.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The landing page (voice_platform is not an app, so its templates are listed here).
        "DIRS": [BASE_DIR / "voice_platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
# conn_max_age=0: under ASGI each request/thread opens its own connection; persistent
# connections leak across Daphne's thread pool.
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
except ValueError as _exc:  # an unknown scheme, a bad port
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {_exc}") from _exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # A connection pool: every database_sync_to_async call would otherwise open a new
    # connection (conn_max_age=0), which made session starts queue under a connect burst.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DB_POOL_MAX_SIZE", 20, minimum=2),
        # How long a request waits for a connection; during a database outage, each
        # database call waits this long before it fails (docs/security.md).
        "timeout": env_int("DB_POOL_TIMEOUT", 10, minimum=1),
    }
# Threads on which live sessions' database calls run side by side (PostgreSQL only; see
# voice_platform/db_threads.py). Each holds at most one pooled connection at a time.
DB_THREADS = env_int("DB_THREADS", 8, minimum=1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_redis_url("REDIS_URL")

if REDIS_URL:
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": "voice_platform.channel_layer.PipelinedRedisChannelLayer",
            "CONFIG": {
                # redis-py's asyncio pool raises instead of waiting past its limit (100), and
                # redis-py 8's 5 s socket timeout races channels-redis's 5 s BZPOPMIN.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": 1000,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 5,
                    }
                ],
                # Capacity is per process for "!" channels; only control messages travel here.
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
    # The cache holds rate counters and the allowlist version, which fail open without it:
    # a Redis that stops answering (a black hole, not a refusal) costs each of them at most
    # this long instead of the kernel's TCP timeout (docs/security.md).
    CACHE_REDIS_TIMEOUT = env_int("CACHE_REDIS_TIMEOUT", 1, minimum=1)
    CACHES: dict[str, Any] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": CACHE_REDIS_TIMEOUT,
                "socket_timeout": CACHE_REDIS_TIMEOUT,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: Redis when configured; otherwise tools run in-process (see tools/ docs).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
TOOL_EXECUTION = "celery" if REDIS_URL else "inprocess"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Brute force (docs/configuration.md#brute-force-protection) ----------------------------
# First, so a locked-out (username, address) is refused before its password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed admin logins are counted in the database, not the cache: the count is shared by
# every server process and survives restarts on SQLite and PostgreSQL alike, `axes_reset`
# (another process) can clear it, and a Redis outage neither locks staff out nor opens the door.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
# Per (username, address): one address guessing cannot lock a user out everywhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "voice_platform.tenancy.attempts.axes_client_address"
AXES_LOCKOUT_CALLABLE = "voice_platform.tenancy.admin_lockout.admin_lockout_response"
# Failed API-key, client-token and resume-token attempts per client address (cache counted):
# AUTH_FAILURE_LIMIT failures within AUTH_FAILURE_WINDOW seconds block the address for a window.
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 20, minimum=1)
AUTH_FAILURE_WINDOW = env_int("AUTH_FAILURE_WINDOW", 300, minimum=1)
# Reverse proxies (CIDRs) whose X-Forwarded-For is believed; empty: the peer address only.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The browser SDK (voice_platform is not an app, so its static/ is listed here).
STATICFILES_DIRS = [BASE_DIR / "voice_platform" / "static"]
# WhiteNoise (MIDDLEWARE) serves the app and STATICFILES_DIRS files straight from the
# finders, so the SDK works without collectstatic.
WHITENOISE_USE_FINDERS = True

# --- Gemini Live -----------------------------------------------------------------------
GEMINI_API_KEY = env_str("GEMINI_API_KEY")
LIVE_API_BASE_URL = env_https_url("LIVE_API_BASE_URL")
LIVE_API_CA_FILE = env_file("LIVE_API_CA_FILE")
LIVE_API_VERSION = env_str("LIVE_API_VERSION", "v1beta")
# permessage-deflate on the upstream WebSocket. The SDK offers it by default and Google
# accepts; on base64 PCM it saves little bandwidth and costs about a fifth of the relay's CPU
# (measured: 4.85 vs 3.97 ms CPU per session-second at 200 sessions), so it is off.
LIVE_UPSTREAM_DEFLATE = env_bool("LIVE_UPSTREAM_DEFLATE", False)
LIVE_MODELS = env_list(
    "LIVE_MODELS",
    [
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-preview-09-2025",
        "gemini-3.1-flash-live-preview",
    ],
)
LIVE_VOICES = env_list(
    "LIVE_VOICES",
    ["Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr"],
)

# Secrets at rest (tenant Gemini keys). Comma-separated Fernet keys, newest first; when
# empty, one key is derived from SECRET_KEY (rotating SECRET_KEY then needs a re-encrypt).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])

# --- REST ------------------------------------------------------------------------------
API_KEY_RATE = env_rate("API_KEY_RATE", "600/min")
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "voice_platform.rest_input.StrictPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {"api_key": API_KEY_RATE},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["voice_platform.rest_input.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voice Platform API",
    "DESCRIPTION": "Manage voice agents and mint ephemeral client tokens. "
    "Authenticate with `Authorization: Bearer <tenant API key>`.",
    "VERSION": "1.0.0",
    # /api/docs/ works offline: Swagger UI's files come from drf-spectacular-sidecar.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "VadSensitivityEnum": "agents.models.Agent.Sensitivity",
        # Its status is in two components (the session list and the session detail).
        "VoiceSessionStatusEnum": "sessions.models.VoiceSession.Status",
        "WebhookDeliveryStatusEnum": "integrations.models.WebhookDelivery.Status",
    },
    # Every operation's error answers (400/401/403/404/413/429/503) in one hook.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "voice_platform.openapi.document_error_responses",
    ],
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be a level name like INFO, not {LOG_LEVEL!r}.")
# Logs (docs/logging.md): "json" (one object per line) or "console" (readable); json unless
# DEBUG. Both carry the session's ids and are cleaned of credentials.
LOG_FORMAT = env_str("LOG_FORMAT", "console" if DEBUG else "json")
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or console, not {LOG_FORMAT!r}.")
# Their DEBUG output is wire content (handshake headers with API keys, every frame with user
# speech and tool arguments): never below INFO, whatever LOG_LEVEL says.
_WIRE_LOGGERS = ("websockets", "httpx", "httpcore", "hpack", "h2", "urllib3", "google_genai")
_WIRE_LEVEL = "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "voice_platform.logging.RedactSecretsFilter"}},
    "formatters": {
        kind: {"()": "voice_platform.logging.formatter", "kind": kind}
        for kind in ("json", "console")
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Daphne logs every request line including the query string (?token=...): the
        # redact filter on the handler strips credentials from it.
        "django.db.backends": {"level": "WARNING"},
        **{name: {"level": _WIRE_LEVEL} for name in _WIRE_LOGGERS},
    },
}

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

REST_FRAMEWORK["EXCEPTION_HANDLER"] = "voice_platform.api_errors.exception_handler"

# --- Live bridge -----------------------------------------------------------------------
# Liveness and reconnects (docs/live-resilience.md). Gemini's pongs take 8-30 s, so no
# timeout here is a ping's: a reply due and silent for LIVE_REPLY_TIMEOUT, or total silence
# (not even a late pong) for LIVE_IDLE_TIMEOUT, is what counts as dead.
LIVE_CONNECT_TIMEOUT = env_float("LIVE_CONNECT_TIMEOUT", 10, minimum=0.1)
LIVE_PING_INTERVAL = env_float("LIVE_PING_INTERVAL", 5, minimum=0.1)
LIVE_REPLY_TIMEOUT = env_float("LIVE_REPLY_TIMEOUT", 4, minimum=0.1)
LIVE_IDLE_TIMEOUT = env_float("LIVE_IDLE_TIMEOUT", 45, minimum=0.1)
LIVE_REPLY_RETRIES = env_int("LIVE_REPLY_RETRIES", 3)
# The SDK's own websockets keepalive, set explicitly: its default 20 s pong timeout kills
# healthy Gemini sessions (field notes: 1011 "keepalive ping timeout").
LIVE_KEEPALIVE_INTERVAL = env_float("LIVE_KEEPALIVE_INTERVAL", 15, minimum=0.1)
LIVE_KEEPALIVE_TIMEOUT = env_float("LIVE_KEEPALIVE_TIMEOUT", 40, minimum=0.1)
# Full-jitter backoff: try n waits uniform in [0, min(CAP, BASE * 2**n)] seconds.
LIVE_RECONNECT_BASE = env_float("LIVE_RECONNECT_BASE", 1.5)
LIVE_RECONNECT_CAP = env_float("LIVE_RECONNECT_CAP", 15)
LIVE_RECONNECT_TRIES = env_int("LIVE_RECONNECT_TRIES", 6, minimum=1)
# An idle goAway reconnects at a random moment of this window (never past its deadline).
LIVE_GO_AWAY_SPREAD = env_float("LIVE_GO_AWAY_SPREAD", 5)
LIVE_RECONNECT_BUDGET = env_int("LIVE_RECONNECT_BUDGET", 30)
LIVE_RECONNECT_BUDGET_WINDOW = env_float("LIVE_RECONNECT_BUDGET_WINDOW", 600)
# Gemini's audio session limit without context compression (15 min).
LIVE_SESSION_LIMIT = env_float("LIVE_SESSION_LIMIT", 900)
LIVE_BUSY_RETRY_AFTER = env_float("LIVE_BUSY_RETRY_AFTER", 10)
# The deployment's cap on live sessions (all processes; 0: none): the Gemini project's
# concurrent-session quota, shared by tenants with their guaranteed_sessions reserved
# (sessions/capacity.py, docs/scaling.md).
LIVE_MAX_SESSIONS = env_int("LIVE_MAX_SESSIONS", 0)
# On SIGTERM, live sessions are handed over (client told to resume) within this many seconds.
LIVE_SHUTDOWN_GRACE = env_float("LIVE_SHUTDOWN_GRACE", 10)
# ... after this many seconds out of the balancer (/readyz 503 from SIGTERM on), so resumes
# land on the other processes: at least the balancer's health-check interval x fall.
LIVE_SHUTDOWN_READY_DELAY = env_float("LIVE_SHUTDOWN_READY_DELAY", 0, maximum=60)
# A session's database writes (transcript, counters, handle, end) outlive an outage this long.
LIVE_DB_OUTAGE_GRACE = env_float("LIVE_DB_OUTAGE_GRACE", 30)
# Every client frame counts, audio included (docs/protocol.md).
LIVE_WS_MESSAGE_RATE = env_float("LIVE_WS_MESSAGE_RATE", 100)
LIVE_WS_MESSAGE_BURST = env_float("LIVE_WS_MESSAGE_BURST", 300)
# Client audio: twice real time (16 kHz PCM16 = 32,000 B/s) sustained, 4 s of burst.
LIVE_WS_AUDIO_BYTES_RATE = env_float("LIVE_WS_AUDIO_BYTES_RATE", 64000)
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Tools (docs/tools.md) ---------------------------------------------------------------
# Modules imported at start-up whose @tool functions form the registry; operators list
# their own after the built-ins, e.g. TOOL_MODULES=tools.builtin,acme_tools.
TOOL_MODULES = env_list("TOOL_MODULES", ["tools.builtin"])
TOOL_TIMEOUT_MAX = 120.0  # seconds; the ceiling of every tool and allowlist timeout
TOOL_RESULT_MAX_BYTES = env_int("TOOL_RESULT_MAX_BYTES", 4096)  # audit preview
TOOL_WEBHOOK_MAX_RESPONSE_BYTES = env_int("TOOL_WEBHOOK_MAX_RESPONSE_BYTES", 262_144)
# CIDRs webhook tools may reach although private/loopback/link-local (empty = none).
TOOL_WEBHOOK_ALLOWED_NETWORKS = env_networks("TOOL_WEBHOOK_ALLOWED_NETWORKS")
TOOL_WEBHOOK_CA_FILE = env_file("TOOL_WEBHOOK_CA_FILE")  # extra CA bundle (tests, private CAs)
TOOL_CELERY_QUEUE = env_str("TOOL_CELERY_QUEUE", "live_tools")
# Threads that run tools in each process that runs them (a Celery worker process, or the
# server without a broker); a call waiting for a free thread past its timeout never starts.
TOOL_THREADS = env_int("TOOL_THREADS", 8, minimum=1)
# How many of those one tenant may hold (running or waiting); one more call is refused as
# busy at once, so one tenant's slow tools cannot time out everyone else's.
TOOL_THREADS_PER_TENANT = env_int("TOOL_THREADS_PER_TENANT", max(1, TOOL_THREADS // 2), minimum=1)
CELERY_TASK_ROUTES = {"tools.tasks.*": {"queue": TOOL_CELERY_QUEUE}}
# Redis redelivers a task whose worker died (acks_late) only once its message has been
# unacknowledged for visibility_timeout (kombu's default: 1 hour). Above the longest a tool
# task may legitimately hold its message (its hard time limit, TOOL_TIMEOUT_MAX + 30 s), or
# a live task would be delivered twice (harmless: the claim runs it once). Abandoned
# messages are looked for every CELERY_RESTORE_INTERVAL seconds (throttle 1: each time).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", int(TOOL_TIMEOUT_MAX) + 60),
    "unacked_restore_interval": env_int("CELERY_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": 1,
}

# --- Observability and analytics (docs/observability.md) ---------------------------------
# /metrics answers a request carrying "Authorization: Bearer <METRICS_TOKEN>", or one from
# an address in METRICS_ALLOWED_NETWORKS (CIDRs); with neither set it answers 404 to all.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Client addresses are compared by their /64 (docs/metrics.md): a narrower IPv6 network
# could never match, so it is refused.
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", max_ipv6_prefix=64)
# Several server processes on one host: each writes its metrics under this directory and
# every /metrics sums them (prometheus_client's multiprocess mode). Empty: this process only.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
# A process labels metrics with at most this many tenants; later ones count as "_other".
METRICS_TENANT_LABEL_LIMIT = env_int("METRICS_TENANT_LABEL_LIMIT", 50, minimum=1)
# Or exactly these tenants (slugs), the same in every process: the others are "_other".
METRICS_TENANT_LABELS = frozenset(env_list("METRICS_TENANT_LABELS", []))
# Traces (OpenTelemetry): off unless enabled; exported over OTLP/HTTP when an endpoint is
# set (OTEL_EXPORTER_OTLP_ENDPOINT, read by the SDK); user content only when allowed.
TRACING_ENABLED = env_bool("TRACING_ENABLED", False)
TRACING_INCLUDE_CONTENT = env_bool("TRACING_INCLUDE_CONTENT", False)
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "voice-platform")
# Error-rate alerts: over the last ALERT_WINDOW_SECONDS of session and tool outcomes per
# agent (and per tenant), at least ALERT_MIN_EVENTS of them and a failure rate of at least
# ALERT_ERROR_RATE raise one alert; it clears below ALERT_CLEAR_RATE. A scope whose alert
# cleared is not raised again for ALERT_COOLDOWN_SECONDS.
ALERT_WINDOW_SECONDS = env_int("ALERT_WINDOW_SECONDS", 300, minimum=1)
ALERT_MIN_EVENTS = env_int("ALERT_MIN_EVENTS", 10, minimum=1)
ALERT_ERROR_RATE = env_float("ALERT_ERROR_RATE", 0.2, maximum=1.0)
ALERT_CLEAR_RATE = env_float("ALERT_CLEAR_RATE", 0.1, maximum=1.0)
ALERT_COOLDOWN_SECONDS = env_int("ALERT_COOLDOWN_SECONDS", 600)
# How often every server process evaluates alerts and rolls usage up (seconds).
ALERT_EVALUATE_INTERVAL = env_int("ALERT_EVALUATE_INTERVAL", 30, minimum=1)
USAGE_ROLLUP_INTERVAL = env_int("USAGE_ROLLUP_INTERVAL", 300, minimum=1)
# Whether server processes run those periodic jobs at all (voice_platform/periodic.py).
PERIODIC_JOBS = env_bool("PERIODIC_JOBS", True)
# Integrator webhooks (docs/webhooks.md): each POST's timeout (seconds); a failed attempt is
# retried after WEBHOOK_RETRY_BASE x 6^(n-1) seconds (capped at WEBHOOK_RETRY_CAP, +-20%
# jitter), at most WEBHOOK_MAX_ATTEMPTS attempts; stuck deliveries are swept every
# WEBHOOK_SWEEP_INTERVAL seconds. Sent by Celery workers when Redis is configured, else by
# threads of the server process (like tools).
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 10.0, minimum=0.1, maximum=60.0)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
WEBHOOK_RETRY_BASE = env_int("WEBHOOK_RETRY_BASE", 5, minimum=1)
WEBHOOK_RETRY_CAP = env_int("WEBHOOK_RETRY_CAP", 21_600, minimum=1)
WEBHOOK_SWEEP_INTERVAL = env_int("WEBHOOK_SWEEP_INTERVAL", 15, minimum=1)
WEBHOOK_DELIVERY = "celery" if REDIS_URL else "inprocess"
WEBHOOK_CELERY_QUEUE = "default"

# Phone calls (docs/telephony.md). PHONE_PUBLIC_URL: the https:// base URL the carrier
# reaches this deployment at (its signatures cover the exact URL; empty = each request's
# own host and scheme). PHONE_CARRIER_CLIENT: how end_call and transfer_call reach the
# carrier ("recording" only records them: tests and trials). PHONE_TOKEN_SECONDS: life of
# the single-use credential in the TwiML answer. PHONE_PLAYBACK_LEAD: seconds of audio the
# carrier may hold ahead of the caller's ear (all of it is lost to a barge-in's `clear`).
# PHONE_DTMF_GAP: keys pressed within this many seconds reach the model as one message.
# PHONE_END_CALL_WAIT: at most this long for the current sentence before a hang-up.
PHONE_PUBLIC_URL = env_https_url("PHONE_PUBLIC_URL").rstrip("/")
PHONE_CARRIER_CLIENT = env_choice("PHONE_CARRIER_CLIENT", "twilio", ("twilio", "recording"))
PHONE_TOKEN_SECONDS = env_int("PHONE_TOKEN_SECONDS", 60, minimum=5)
PHONE_PLAYBACK_LEAD = env_float("PHONE_PLAYBACK_LEAD", 0.2, minimum=0.04, maximum=5.0)
PHONE_DTMF_GAP = env_float("PHONE_DTMF_GAP", 1.0, minimum=0.1, maximum=10.0)
PHONE_END_CALL_WAIT = env_float("PHONE_END_CALL_WAIT", 15.0, minimum=0.0, maximum=120.0)

# Every thread of a server process that may hold a pooled connection at once: the session
# threads, in-process tools (no Redis), and four others (the thread-sensitive thread, the
# periodic jobs, webhook deliveries and their emitter). A pool smaller than that makes
# calls wait for a connection under load (DB_POOL_TIMEOUT) instead of running.
_pool_options = DATABASES["default"].get("OPTIONS", {}).get("pool")
_db_users = DB_THREADS + (TOOL_THREADS if TOOL_EXECUTION == "inprocess" else 0) + 4
if _pool_options and _pool_options["max_size"] < _db_users:
    raise ImproperlyConfigured(
        f"DB_POOL_MAX_SIZE ({_pool_options['max_size']}) is under what a server process may "
        f"hold at once: DB_THREADS ({DB_THREADS})"
        + (f" + TOOL_THREADS ({TOOL_THREADS})" if TOOL_EXECUTION == "inprocess" else "")
        + f" + 4 = {_db_users}. Raise DB_POOL_MAX_SIZE or lower DB_THREADS."
    )
