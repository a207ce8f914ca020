"""Why an upstream connection ended, and what to do next.

Gemini Live ends connections with a handful of codes that mean very different things
(docs/live-resilience.md has the table with its public sources): 1011 is both a planned
"Deadline expired" after ``goAway`` and an over-quota refusal; 1008 is both a fatal bad key
and a transient "Operation is not implemented" on native-audio models with tools, and on a
resume it says the handle is gone. The close reason text is what tells them apart, so it is
kept and classified here, in one place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Next(enum.StrEnum):
    RESUME = "resume"  # reconnect with the newest handle (the usual case)
    FRESH = "fresh"  # start a new upstream session seeded from the stored transcript
    BUSY = "busy"  # over quota: retry later (mid-call) or tell the client (at start)
    FAIL = "fail"  # the request itself is refused: retrying cannot help


@dataclass(frozen=True)
class Ending:
    cause: str  # recorded with the reconnect, sent as the ``session.reconnecting`` reason
    next: Next
    detail: str = ""  # the service's close reason, kept for the log and the client error


# Lower-cased fragments of close reasons, each from a public report (see module docstring).
_QUOTA = ("resource_exhausted", "quota", "maximum concurrent", "rate limit")
_NOT_IMPLEMENTED = ("not implemented",)
_DEADLINE = ("deadline expired",)
_SESSION_LIMIT = ("session duration", "session limit", "duration limit")
_HANDLE = ("handle", "resumption")
_AUTH_OR_MODEL = ("api key", "not found", "permission", "token")


def _has(reason: str, fragments: tuple[str, ...]) -> bool:
    return any(fragment in reason for fragment in fragments)


def classify_close(
    code: int | None,
    reason: str,
    *,
    resuming: bool,
    at_setup: bool,
    session_age: float | None = None,
    session_limit: float | None = None,
) -> Ending:
    """Classify an ``APIError`` close. ``resuming``: the connection offered a handle;
    ``at_setup``: it ended before it was ready; ``session_age``: seconds since the current
    upstream session began (across resumptions), compared with ``session_limit``."""
    text = (reason or "").lower()
    if code == 1007:
        return Ending("upstream_rejected", Next.FAIL, reason)
    if code == 1008:
        if _has(text, _NOT_IMPLEMENTED):
            return Ending("upstream_not_implemented", Next.RESUME, reason)
        if resuming and at_setup and (_has(text, _HANDLE) or not _has(text, _AUTH_OR_MODEL)):
            # An expired or unknown handle: the conversation goes on in a new session.
            return Ending("handle_rejected", Next.FRESH, reason)
        return Ending("upstream_rejected", Next.FAIL, reason)
    if code == 1011 or code == 1013 or code == 1014:
        if _has(text, _QUOTA):
            return Ending("upstream_quota", Next.BUSY, reason)
        if _has(text, _DEADLINE):  # the connection's end, whatever the session's age
            return Ending("connection_deadline", Next.RESUME, reason)
        if _has(text, _SESSION_LIMIT) or _past_limit(session_age, session_limit):
            return Ending("session_limit", Next.FRESH, reason)
        return Ending(f"upstream_closed_{code}", Next.RESUME, reason)
    if code == 1006 or code is None:
        return Ending("connection_lost", Next.RESUME, reason)
    return Ending(f"upstream_closed_{code}", Next.RESUME, reason)


def _past_limit(age: float | None, limit: float | None) -> bool:
    """A 1011 close at (or just before) the session limit is the limit, whatever its text:
    resuming that session would be closed again at once."""
    return age is not None and limit is not None and limit > 0 and age >= 0.97 * limit
