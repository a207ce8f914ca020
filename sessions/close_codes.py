"""WebSocket close codes of the client protocol (docs/protocol.md)."""

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
