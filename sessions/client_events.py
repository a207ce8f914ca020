"""Server -> client JSON events of the client protocol, built in one place."""

from __future__ import annotations

from typing import Any

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000


def session_started(
    *, session_id: str, resume_token: str, agent_id: int, agent_name: str, modality: str
) -> dict[str, Any]:
    return {
        "type": "session.started",
        "session_id": session_id,
        "resume_token": resume_token,
        "agent": {"id": agent_id, "name": agent_name, "response_modality": modality},
        "audio": {"input_rate": INPUT_RATE, "output_rate": OUTPUT_RATE},
    }


def error(code: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **fields}


def warning(code: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"type": "warning", "code": code, "message": message, **fields}


def busy(*, retry_after: int) -> dict[str, Any]:
    """The model service refused the session for quota: try again after ``retry_after``
    seconds (spread per client, so refused clients do not come back together)."""
    return {
        "type": "error",
        "code": "busy",
        "message": "The model service is at capacity. Try again later.",
        "retry_after": retry_after,
    }


def at_capacity(*, retry_after: int) -> dict[str, Any]:
    """The deployment holds as many sessions as its cap allows (``LIVE_MAX_SESSIONS``):
    try again after ``retry_after`` seconds (spread per client). The token is not used."""
    return {
        "type": "error",
        "code": "busy",
        "message": "The platform is at its concurrent-session capacity. Try again later.",
        "retry_after": retry_after,
    }


def session_ended(reason: str) -> dict[str, Any]:
    return {"type": "session.ended", "reason": reason}


def simple(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}
