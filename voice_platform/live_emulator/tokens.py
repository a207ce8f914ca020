"""Ephemeral auth tokens (`POST /v1alpha/auth_tokens`) and their checks on connect."""

from __future__ import annotations

import copy
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from voice_platform.live_emulator.protocol import normalise


class TokenRequestError(ValueError):
    """A bad REST request: becomes `{"error": {"code": 400, ...}}`."""


class TokenRejected(Exception):
    """A token that may not open this session; the reason goes in the close frame."""


@dataclass
class AuthToken:
    name: str
    expire_time: float
    new_session_expire_time: float
    uses: int  # 0 = unlimited
    used: int
    setup: dict[str, Any] | None  # camelCase bidiGenerateContentSetup, or None
    field_mask: list[str] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expireTime": _iso(self.expire_time),
            "newSessionExpireTime": _iso(self.new_session_expire_time),
            "uses": self.uses,
        }


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: object, field: str) -> float:
    if not isinstance(value, str):
        raise TokenRequestError(f"Invalid value for {field}.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TokenRequestError(f"Invalid value for {field}.") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class TokenStore:
    def __init__(self, *, expire: float, new_session_window: float, max_ahead: float) -> None:
        self.expire = expire
        self.new_session_window = new_session_window
        self.max_ahead = max_ahead
        self._tokens: dict[str, AuthToken] = {}

    def create(self, body: dict[str, Any], now: float) -> AuthToken:
        """Validate a create request (camel or snake keys) and store the token."""
        body = normalise(body)
        expire = (
            _parse_time(body["expireTime"], "expireTime")
            if "expireTime" in body
            else now + self.expire
        )
        new_session = (
            _parse_time(body["newSessionExpireTime"], "newSessionExpireTime")
            if "newSessionExpireTime" in body
            else min(expire, now + self.new_session_window)
        )
        if expire <= now or expire > now + self.max_ahead:
            raise TokenRequestError("expireTime must be in the future and within 20 hours.")
        if new_session <= now or new_session > expire:
            raise TokenRequestError(
                "newSessionExpireTime must be in the future, before expireTime."
            )
        uses = body.get("uses", 1)
        if not isinstance(uses, int) or uses < 0:
            raise TokenRequestError("uses must be a non-negative integer.")
        setup = body.get("bidiGenerateContentSetup")
        if setup is not None and not isinstance(setup, dict):
            raise TokenRequestError("bidiGenerateContentSetup must be an object.")
        mask = body.get("fieldMask")
        field_mask = (
            [p.strip() for p in mask.split(",") if p.strip()] if isinstance(mask, str) else None
        )
        token = AuthToken(
            name="auth_tokens/" + secrets.token_urlsafe(24),
            expire_time=expire,
            new_session_expire_time=new_session,
            uses=uses,
            used=0,
            setup=setup,
            field_mask=field_mask,
        )
        self._tokens[token.name] = token
        return token

    def get(self, name: str) -> AuthToken | None:
        return self._tokens.get(name)

    def admit(self, name: str, now: float, *, resuming: bool) -> AuthToken:
        """Check a token for a new connection and consume a use (resuming consumes none)."""
        token = self._tokens.get(name)
        if token is None:
            raise TokenRejected("Ephemeral token is not valid.")
        if now >= token.expire_time:
            raise TokenRejected("Ephemeral token has expired.")
        if not resuming:
            if now >= token.new_session_expire_time:
                raise TokenRejected("Ephemeral token can no longer start new sessions.")
            if token.uses and token.used >= token.uses:
                raise TokenRejected("Ephemeral token has no uses left.")
            token.used += 1
        return token


def apply_locks(token: AuthToken, client_setup: dict[str, Any]) -> dict[str, Any]:
    """The setup the session really gets: the token's locked fields override the client's.

    Without a fieldMask every field set in the token's setup is locked (leaf by leaf);
    with one, exactly the listed paths take the token's value (or are removed if the token
    leaves them unset), and the token's other fields only fill gaps. The client's
    `sessionResumption` always survives: resuming needs its handle.
    """
    if not token.setup:
        return client_setup
    locked = normalise(token.setup)
    if token.field_mask is None:
        return _deep_merge(client_setup, locked)
    result = _deep_merge(locked, client_setup)
    for path in token.field_mask:
        keys = [k for k in path.split(".") if k]
        if keys:
            _set_path(result, keys, _get_path(locked, keys))
    if "sessionResumption" in client_setup:
        result["sessionResumption"] = client_setup["sessionResumption"]
    return result


_MISSING = object()


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _get_path(data: dict[str, Any], keys: list[str]) -> Any:
    node: Any = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if value is _MISSING:
                return
            child = node[key] = {}
        node = child
    if value is _MISSING:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = copy.deepcopy(value)
