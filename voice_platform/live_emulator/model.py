"""The scripted "model": what it answers, and how many tokens things cost.

Pure functions and small records; `session.py` drives them over the wire.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from voice_platform.live_emulator.protocol import compact_json

RECAP_COMMAND = "recap"
# Said before a toolCall when `tool_preamble` is on (part of the model's turn).
TOOL_PREAMBLE = "Let me check."
_CALL_LINE = re.compile(r"^call\s+([A-Za-z_][\w.-]*)\s+(\{.*\})\s*$")


@dataclass
class Turn:
    """One entry of the conversation history (survives resumption)."""

    role: str  # "user" or "model"
    text: str
    tokens: int
    modality: str = "TEXT"  # what the tokens were: TEXT or AUDIO


@dataclass(frozen=True)
class PlannedCall:
    name: str
    args: dict[str, Any]
    non_blocking: bool


def text_tokens(text: str) -> int:
    """About four characters per token, like Gemini's tokenizer on English."""
    return math.ceil(len(text) / 4) if text else 0


def audio_tokens(seconds: float, per_second: int) -> int:
    return math.ceil(seconds * per_second) if seconds > 0 else 0


def declared_functions(setup: dict[str, Any]) -> dict[str, bool]:
    """Map each declared function name to whether it is NON_BLOCKING."""
    functions: dict[str, bool] = {}
    for tool in setup.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        for decl in tool.get("functionDeclarations") or []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                functions[decl["name"]] = decl.get("behavior") == "NON_BLOCKING"
    return functions


def plan_tool_calls(text: str, functions: dict[str, bool]) -> list[PlannedCall] | None:
    """`call <name> <JSON object>` lines, all with declared names, make a tool turn."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    calls: list[PlannedCall] = []
    for line in lines:
        match = _CALL_LINE.match(line)
        if not match or match.group(1) not in functions:
            return None
        try:
            args = json.loads(match.group(2))
        except ValueError:
            return None
        if not isinstance(args, dict):
            return None
        calls.append(PlannedCall(match.group(1), args, functions[match.group(1)]))
    return calls


def reply_to_text(text: str, history: list[Turn]) -> str:
    """`You said: <text>`, except `recap`, which lists what the user said before."""
    if text.strip().lower() == RECAP_COMMAND:
        earlier = [turn.text for turn in history if turn.role == "user"]
        # The recap request itself is the last user turn: leave it out.
        earlier = earlier[:-1]
        if not earlier:
            return "Nothing was said before."
        return "Earlier you said: " + " | ".join(earlier)
    return f"You said: {text}"


def tool_result_line(name: str, response: Any) -> str:
    return f"Result of {name}: {compact_json(response)}"


def tool_started_line(name: str) -> str:
    return f"Started {name}."


def split_text(text: str, parts: int) -> list[str]:
    """Split into at most `parts` pieces on word boundaries; joined they give `text` back."""
    words = re.findall(r"\S+\s*|\s+", text)
    if parts <= 1 or len(words) <= 1:
        return [text] if text else []
    per = math.ceil(len(words) / parts)
    return ["".join(words[i : i + per]) for i in range(0, len(words), per)]


def system_text(setup: dict[str, Any]) -> str:
    instruction = setup.get("systemInstruction")
    if isinstance(instruction, str):
        return instruction
    if isinstance(instruction, dict):
        return "".join(
            str(p.get("text", "")) for p in instruction.get("parts") or [] if isinstance(p, dict)
        )
    return ""


def content_texts(turns: list[Any], role: str) -> list[str]:
    """Text of the parts of the given role's turns (a missing role counts as user)."""
    out: list[str] = []
    for turn in turns:
        if not isinstance(turn, dict) or (turn.get("role") or "user") != role:
            continue
        text = "".join(
            str(p.get("text", "")) for p in turn.get("parts") or [] if isinstance(p, dict)
        )
        if text:
            out.append(text)
    return out


def usage_metadata(
    *, prompt_text: int, prompt_audio: int, response: int, response_modality: str
) -> dict[str, Any]:
    """The `usageMetadata` of a `turnComplete` (Live uses responseTokenCount)."""
    prompt_details = [{"modality": "TEXT", "tokenCount": prompt_text}]
    if prompt_audio:
        prompt_details.append({"modality": "AUDIO", "tokenCount": prompt_audio})
    prompt = prompt_text + prompt_audio
    return {
        "promptTokenCount": prompt,
        "responseTokenCount": response,
        "totalTokenCount": prompt + response,
        "promptTokensDetails": prompt_details,
        "responseTokensDetails": [{"modality": response_modality, "tokenCount": response}],
    }


def compress(history: list[Turn], fixed_tokens: int, trigger: int, target: int) -> int:
    """Sliding window: if the context exceeds `trigger`, drop the oldest turns down to
    `target`. Mutates `history`; returns how many turns were dropped."""
    total = fixed_tokens + sum(turn.tokens for turn in history)
    if total <= trigger:
        return 0
    dropped = 0
    while history and total > target:
        total -= history.pop(0).tokens
        dropped += 1
    return dropped
