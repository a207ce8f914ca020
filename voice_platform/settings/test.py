"""Test settings: the real services when DATABASE_URL/REDIS_URL are set (CI sets both)."""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")

from voice_platform.settings.base import *  # noqa: F403
from voice_platform.settings.base import ALLOWED_HOSTS
from voice_platform.settings.env import env_bool

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A per-run cache prefix: the Redis cache (throttle counters) is shared with other runs.
import uuid  # noqa: E402

from voice_platform.settings.base import CACHES  # noqa: E402

CACHES["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:8]}"

from voice_platform.settings.base import TOOL_MODULES  # noqa: E402

TOOL_MODULES = [*TOOL_MODULES, "tests.sessions.sample_tools"]

# Brute-force protection counts failures across the whole run (the cache outlives a test), so
# it stays out of the way here; tests/voice_platform/tenancy/test_brute_force.py turns it on.
# Axes is off too: the test client's login() authenticates without a request, which axes refuses.
AXES_ENABLED = False
# Alert evaluation and the usage rollup sweep every tenant: in a test process they would run
# into other tests' rows (and lock them) at random moments. Their tests call them directly,
# and tests/voice_platform/test_periodic.py drives the scheduler.
PERIODIC_JOBS = env_bool("PERIODIC_JOBS", False)
AUTH_FAILURE_LIMIT = 1_000_000
