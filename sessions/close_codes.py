"""WebSocket close codes of the client protocol and the reason text each close frame
carries (docs/protocol.md). The texts are stable: clients may show or log them."""

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    # Not 1011: the ASGI server (Daphne, autobahn) lets an application send only 1000 and
    # 3000-4999; a refused 1011 left the socket open after session.ended.
    UPSTREAM_UNAVAILABLE = 4011
    SUPERSEDED = 4000
    UNAUTHENTICATED = 4001
    FORBIDDEN = 4003
    POLICY = 4008
    BAD_FRAME = 4009
    BUSY = 4013  # the model service is over quota: retry after the error's retry_after
    TENANT_LIMIT = 4029
    # The server process is stopping (a deploy): resume with the resume token, at once.
    SERVER_RESTART = 4012
    # Too many failed credential attempts from the client's address (not 4029: that is the
    # tenant's session limit, which a retry soon may pass; this one lasts AUTH_FAILURE_WINDOW).
    TOO_MANY_FAILURES = 4030


# One short text per code (a close frame's reason holds at most 123 bytes). The event
# before the close (session.ended, error) says more; a refusal at the handshake has no
# event, so its reason text is all the client learns. 4001 has one text for every kind of
# bad credential: telling "expired" from "unknown" would help a guesser.
CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "session ended",
    CloseCode.SUPERSEDED: "superseded",
    CloseCode.UNAUTHENTICATED: "invalid token",
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.POLICY: "rate limit exceeded",
    CloseCode.BAD_FRAME: "bad audio frame",
    CloseCode.UPSTREAM_UNAVAILABLE: "session failed",
    CloseCode.SERVER_RESTART: "server restarting",
    CloseCode.BUSY: "unavailable",
    CloseCode.TENANT_LIMIT: "too many concurrent sessions",
    CloseCode.TOO_MANY_FAILURES: "too many failed attempts",
}

# A 4003 names which rule refused (the client holds a valid token: no oracle is opened).
FORBIDDEN_REASONS: dict[str, str] = {
    "origin_not_allowed": "origin not allowed",
    "agent_disabled": "agent disabled",
    "tenant_suspended": "tenant suspended",
}


def close_reason(code: int, refusal: str | None = None) -> str:
    """The close frame's reason text for ``code`` (``refusal``: a SessionRefused reason)."""
    specific = FORBIDDEN_REASONS.get(refusal or "")
    if code == CloseCode.FORBIDDEN and specific is not None:
        return specific
    try:
        return CLOSE_REASONS[CloseCode(code)]
    except ValueError:  # not one of ours (a server-sent 1002/1007/1009 never comes here)
        return ""
