"""Wire format: key normalisation, base64, and the server messages the SDK understands."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

# Close codes the emulator uses (protocol doc section 5).
CLOSE_NORMAL = 1000
CLOSE_INVALID_ARGUMENT = 1007  # bad setup or message
CLOSE_POLICY = 1008  # not found / permission denied (auth, model, handle)
CLOSE_INTERNAL = 1011

REASON_INVALID_ARGUMENT = "Request contains an invalid argument."
REASON_BAD_KEY = "API key not valid. Please pass a valid API key."
REASON_METHOD_NOT_FOUND = "Method not found."
REASON_BAD_HANDLE = "Session resumption handle is invalid or has expired."
REASON_SESSION_LIMIT = "Session duration limit reached."  # assumption: no public text
REASON_INTERNAL = "Internal error encountered."  # googleapis/python-genai#985
REASON_DEADLINE = "Deadline expired before operation could complete."  # kizuna-ai-lab/sokuji#179
# Refusals of the realistic profile, verbatim from public reports (docs/emulator.md).
# Over quota, as received (already cut at 123 bytes): GoogleCloudPlatform/generative-ai#1576.
REASON_QUOTA = (
    "Request trace id: f102afa6f090070d, [ORIGINAL ERROR] generic::resource_exhausted: "
    "RESOURCE_EXHAUSTED: Maximum concurrent se"
)
# Native-audio models with tools, when a function call is due: livekit/agents#4545.
REASON_NOT_IMPLEMENTED = "Operation is not implemented, or supported, or enabled."
# Close 1007 at setup with an expired key: yagudaev/voiceclaw#155.
REASON_KEY_EXPIRED = "API key expired. Please renew the API key."
# A resume while an older socket of the session is open: the code (1011) is from
# aicc2025/sip-to-ai#14; that report gives no reason text, so this one is an assumption.
REASON_RESUME_WHILE_OPEN = REASON_INTERNAL

MAX_REASON_BYTES = 123

# Values under these keys are free-form (Struct or schema property names): left untouched.
FREE_FORM_KEYS = frozenset(
    {
        "args",
        "response",
        "parameters",
        "parametersJsonSchema",
        "responseJsonSchema",
        "responseSchema",
        "labels",
    }
)

_SNAKE = re.compile(r"_([a-z0-9])")


class ProtocolError(ValueError):
    """A client frame the real service would answer with close 1007."""


def camel(key: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), key)


def normalise(value: Any) -> Any:
    """Recursively camelCase proto field names; the SDK mixes snake and camel case."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = camel(key)
            out[name] = item if name in FREE_FORM_KEYS else normalise(item)
        return out
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def b64decode(data: str) -> bytes:
    """Decode URL-safe (what the SDK sends) or standard base64, padded or not."""
    text = data.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ProtocolError("invalid base64") from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_client_message(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed JSON") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    result: dict[str, Any] = normalise(message)
    return result


def encode(message: dict[str, Any]) -> bytes:
    """Server frames are compact UTF-8 JSON sent as binary frames, like the real service."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


def truncate_reason(reason: str) -> str:
    """Close reasons are limited to 123 bytes; cut on a character boundary."""
    raw = reason.encode()
    if len(raw) <= MAX_REASON_BYTES:
        return reason
    return raw[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def duration(seconds: float) -> str:
    """A protobuf Duration in JSON form, e.g. `50s` or `0.5s`."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}".rstrip("0") + "s"


# --- server messages -------------------------------------------------------------------

AUDIO_OUT_MIME = "audio/pcm;rate=24000"


def setup_complete() -> dict[str, Any]:
    return {"setupComplete": {}}


def model_text(text: str) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": text}]}}}


def model_audio(pcm: bytes) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": AUDIO_OUT_MIME, "data": b64encode(pcm)}}
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [part]}}}


def input_transcription(text: str) -> dict[str, Any]:
    return {"serverContent": {"inputTranscription": {"text": text}}}


def output_transcription(text: str) -> dict[str, Any]:
    return {"serverContent": {"outputTranscription": {"text": text}}}


def interrupted() -> dict[str, Any]:
    return {"serverContent": {"interrupted": True}}


def generation_complete() -> dict[str, Any]:
    return {"serverContent": {"generationComplete": True}}


def turn_complete(usage: dict[str, Any]) -> dict[str, Any]:
    return {"serverContent": {"turnComplete": True}, "usageMetadata": usage}


def usage_update(usage: dict[str, Any]) -> dict[str, Any]:
    """A running usage report during a reply (cumulative within the turn, not a delta)."""
    return {"usageMetadata": usage}


def tool_call(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"toolCall": {"functionCalls": calls}}


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    return {"toolCallCancellation": {"ids": ids}}


def resumption_update(handle: str | None) -> dict[str, Any]:
    if handle is None:
        return {"sessionResumptionUpdate": {"resumable": False}}
    return {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}


def go_away(seconds_left: float) -> dict[str, Any]:
    return {"goAway": {"timeLeft": duration(seconds_left)}}
