"""Waking the live session that waits for a call's outcome.

Each session's consumer joins the channel-layer group ``tool_results_group(session)`` while
it holds the session, so the outcome reaches whichever server process holds it now (after
a resume it may be another one) without tools knowing anything about sessions. Only a
wake-up: a lost message costs the waiting call its poll interval, never the result, which
it then reads from the database.
"""

from __future__ import annotations

import logging
import uuid

from tools.models import ToolCallRecord
from tools.outcome import tool_call_outcome
from voice_platform.channel_send import group_send_blocking

logger = logging.getLogger(__name__)


def tool_results_group(session_ref: uuid.UUID | str) -> str:
    return f"tools.results.{uuid.UUID(str(session_ref)).hex}"


def tool_result_notify(*, record: ToolCallRecord) -> None:
    try:
        group = tool_results_group(record.session_ref)
        group_send_blocking(group, tool_call_outcome(record=record))
    except Exception:
        logger.warning("tool.result wake-up for call %s not delivered", record.pk, exc_info=True)
