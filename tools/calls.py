"""The tools app's interface to the live bridge: everything ``sessions`` uses, nothing more.

The dependency runs one way: sessions import this module; tools never import sessions.
"""

from tools.admission import Admission, ToolCallRequest, tool_call_admit, tool_call_enqueue
from tools.allowlist import ToolAllowlist, tool_allowlist_for_agent
from tools.execution import tool_call_run_inprocess
from tools.idempotency import canonical_arguments
from tools.notify import tool_results_group
from tools.outcome import (
    tool_call_cancel_by_key,
    tool_call_finish_early,
    tool_call_outcome,
    tool_call_outcome_by_key,
)
from tools.selectors import tool_call_next_turn

# Audit status -> the client protocol's ``tool.finished`` status.
FINISHED_STATUS = {
    "succeeded": "ok",
    "failed": "error",
    "rejected": "rejected",
    "timeout": "timeout",
    "cancelled": "cancelled",
}

__all__ = [
    "FINISHED_STATUS",
    "Admission",
    "ToolAllowlist",
    "ToolCallRequest",
    "canonical_arguments",
    "tool_allowlist_for_agent",
    "tool_call_admit",
    "tool_call_cancel_by_key",
    "tool_call_enqueue",
    "tool_call_finish_early",
    "tool_call_next_turn",
    "tool_call_outcome",
    "tool_call_outcome_by_key",
    "tool_call_run_inprocess",
    "tool_results_group",
]
