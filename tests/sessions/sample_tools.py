"""Tools that exist only for tests and benchmarks (listed in TOOL_MODULES by test settings)."""

from __future__ import annotations

import time
from typing import Any

from tools.models import OutboxEmail
from tools.registry import ToolContext, tool


@tool(name="slow_tool", description="Sleeps, then answers.", timeout=5.0, rate_limit="1000/min")
def slow_tool(ctx: ToolContext, *, seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@tool(name="broken_tool", description="Always fails.", rate_limit="1000/min")
def broken_tool(ctx: ToolContext) -> dict[str, Any]:
    raise RuntimeError("kaput")


@tool(
    name="background_note",
    description="Takes a note in the background.",
    behavior="NON_BLOCKING",
    scheduling="WHEN_IDLE",
    rate_limit="1000/min",
)
def background_note(ctx: ToolContext, *, note: str) -> dict[str, Any]:
    return {"noted": note}


@tool(name="noop", description="Does nothing (benchmarks).", rate_limit="1000000/min")
def noop(ctx: ToolContext) -> dict[str, Any]:
    return {}


@tool(
    name="slow_email",
    description="Sleeps, then writes an outbox email (a slow tool with a side effect).",
    timeout=10.0,
    rate_limit="1000/min",
)
def slow_email(ctx: ToolContext, *, to: str, seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    email = OutboxEmail.objects.create(
        tenant=ctx.tenant, to=to, subject="slow", body="", tool_call_id=ctx.record_id
    )
    return {"status": "accepted", "outbox_id": email.pk}
