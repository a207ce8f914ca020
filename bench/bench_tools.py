"""A no-op tool for bench/tool_bench.py (listed in TOOL_MODULES by the bench only)."""

from __future__ import annotations

from typing import Any

from tools.registry import ToolContext, tool


@tool(name="bench_noop", description="Does nothing.", rate_limit="1000000/min")
def bench_noop(ctx: ToolContext) -> dict[str, Any]:
    return {}
