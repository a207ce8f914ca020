"""WebSocket close codes of the client protocol (docs/protocol.md)."""

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    UPSTREAM_UNAVAILABLE = 1011
    SUPERSEDED = 4000
    UNAUTHENTICATED = 4001
    FORBIDDEN = 4003
    POLICY = 4008
    BAD_FRAME = 4009
    BUSY = 4013  # the model service is over quota: retry after the error's retry_after
    TENANT_LIMIT = 4029
