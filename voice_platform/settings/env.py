"""Small, typed readers for 12-factor environment variables."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import secrets
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """A whole number, at least ``minimum`` (no setting of ours is negative)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_float(
    name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    """A number in [``minimum``, ``maximum``] (seconds, rates and fractions are never
    negative); NaN and infinity are refused."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        bounds = (
            f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        )
        raise ImproperlyConfigured(f"{name} must be a number {bounds}, got {raw!r}")
    return value


def _url_parts(name: str, value: str) -> SplitResult:
    """``value`` split, its port parsed; a bad one is an error naming ``name``."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL: {exc}") from exc
    return parts


def env_https_url(name: str) -> str:
    """An http(s) URL with a host, or "" when unset."""
    value = env_str(name).strip()
    if not value:
        return ""
    parts = _url_parts(name, value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an https:// URL with a host, got {value!r}")
    return value


def env_file(name: str) -> str:
    """The path of a file that exists, or "" when unset."""
    value = env_str(name).strip()
    if value and not Path(value).is_file():
        raise ImproperlyConfigured(f"{name} names no file: {value!r}")
    return value


def env_secret_file(name: str) -> str:
    """The stripped contents of the file ``name`` points at (a Docker secret, the compose
    stack's generated key), or "" when unset. A missing, unreadable or empty file is an error
    naming ``name``; the contents never appear in a message."""
    path = env_file(name)
    if not path:
        return ""
    try:
        value = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{name}: cannot read {path!r}: {exc}") from exc
    if not value:
        raise ImproperlyConfigured(f"{name}: {path!r} is empty")
    return value


# A key shorter than this, with fewer distinct characters, or a placeholder, is refused by
# production settings (Django's own check warns at the same length and variety).
SECRET_KEY_MIN_LENGTH = 50
_PLACEHOLDER_MARKS = ("change-me", "changeme", "django-insecure-")


def secret_key_problem(key: str) -> str:
    """Why ``key`` must not sign production sessions, or "" when it may."""
    if not key:
        return "is not set"
    if any(mark in key.lower() for mark in _PLACEHOLDER_MARKS):
        return "is a placeholder (it contains 'change-me' or Django's 'django-insecure-')"
    if len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < 5:
        return f"is too weak (at least {SECRET_KEY_MIN_LENGTH} random characters)"
    return ""


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (an empty value means the default)."""
    value = env_str(name).strip() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, *, max_ipv6_prefix: int = 128) -> list[str]:
    """A comma-separated list of CIDRs, each checked (and IPv6 ones at most /max_ipv6_prefix
    long, for addresses compared by a prefix of that length)."""
    values = env_list(name, [])
    for value in values:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not a CIDR") from exc
        if network.version == 6 and network.prefixlen > max_ipv6_prefix:
            raise ImproperlyConfigured(
                f"{name}: {value!r} is narrower than /{max_ipv6_prefix}; IPv6 clients are "
                f"matched by their /{max_ipv6_prefix}"
            )
    return values


_RATE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")
_REDIS_SCHEMES = {"redis", "rediss", "unix"}


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate, e.g. 600/min (N/s|sec|m|min|h|hour|d|day)."""
    value = env_str(name, default).strip()
    if not _RATE.match(value):
        raise ImproperlyConfigured(
            f"{name} must be a rate like 600/min (N/sec|min|hour|day), got {value!r}"
        )
    return value


def env_redis_url(name: str) -> str:
    """A Redis URL (redis://, rediss:// or unix://), or "" when unset."""
    value = env_str(name).strip()
    if not value:
        return ""
    parts = _url_parts(name, value)
    database = parts.path.strip("/")
    if parts.scheme not in _REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{name} must start with redis://, rediss:// or unix://, got {parts.scheme!r}"
        )
    if parts.scheme != "unix" and (not parts.hostname or (database and not database.isdigit())):
        raise ImproperlyConfigured(
            f"{name} must look like redis://host:6379/0 (a host, and a database number)"
        )
    return value


def dev_secret_key(var_dir: Path) -> str:
    """A development key generated once and kept under ``var/`` so sessions survive restarts."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
