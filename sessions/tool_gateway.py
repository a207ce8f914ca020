"""The seam between the bridge and tool execution.

``ToolGateway`` decides what the model's function calls get. Until an agent has tools, the
answer to every call is the contract's refusal: ``{"error": "<reason>"}`` to the model and
``tool.finished`` with ``rejected`` to the client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from google.genai import types

SendResponses = Callable[[list[types.FunctionResponse]], Awaitable[None]]
Emit = Callable[[dict[str, Any]], Awaitable[None]]


class ToolGateway(Protocol):
    def function_declarations(self) -> list[types.FunctionDeclaration]: ...

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit
    ) -> None: ...

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None: ...

    async def close(self) -> None: ...


class NoTools:
    """An agent without an allowlist: every call is refused."""

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return []

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit
    ) -> None:
        responses = []
        for call in calls:
            name = call.name or ""
            responses.append(
                types.FunctionResponse(
                    id=call.id,
                    name=name,
                    response={"error": f"tool {name!r} is not allowlisted for this agent"},
                )
            )
            await emit({"type": "tool.finished", "call_id": call.id, "name": name,
                        "status": "rejected"})  # fmt: skip
        await send(responses)

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None:
        return None

    async def close(self) -> None:
        return None
