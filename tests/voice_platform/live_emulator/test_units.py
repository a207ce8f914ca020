"""Unit tests of the emulator's pure parts."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from voice_platform.live_emulator import audio, model, protocol
from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.tokens import AuthToken, apply_locks
from voice_platform.live_emulator.vad import EnergyVad, VadEvent

from .helpers import silence, tone


def test_protocol_normalise_camelcases_but_not_free_form():
    raw = {
        "client_content": {"turn_complete": True},
        "tool_response": {"function_responses": [{"id": "1", "response": {"snake_key": 1}}]},
    }
    out = protocol.normalise(raw)
    assert out["clientContent"] == {"turnComplete": True}
    assert out["toolResponse"]["functionResponses"][0]["response"] == {"snake_key": 1}


@pytest.mark.parametrize("encode", [base64.urlsafe_b64encode, base64.b64encode])
def test_protocol_b64decode_accepts_both_alphabets(encode):
    data = bytes(range(256))
    assert protocol.b64decode(encode(data).decode().rstrip("=")) == data


def test_protocol_truncate_reason_on_character_boundary():
    reason = "é" * 100
    cut = protocol.truncate_reason(reason)
    assert len(cut.encode()) <= 123
    assert reason.startswith(cut)


def test_protocol_duration_format():
    assert protocol.duration(50) == "50s"
    assert protocol.duration(0.25) == "0.25s"


def test_faults_parse_roundtrip():
    faults = Faults(close_after=3, close_code=1008, close_reason="a, b", stall_setup=math.inf)
    assert Faults.parse(faults.to_header()) == faults


def test_faults_parse_rejects_unknown_key():
    with pytest.raises(ValueError, match="unknown"):
        Faults.parse("nope=1")


def test_vad_detects_speech_and_end_of_turn():
    vad = EnergyVad(threshold=500, start_ms=40, silence_ms=300)
    assert vad.feed(silence(0.5)) == []
    assert vad.feed(tone(0.5)) == [VadEvent.SPEECH_START]
    assert vad.feed(silence(0.2)) == []
    assert vad.feed(silence(0.2)) == [VadEvent.SPEECH_END]


def test_vad_handles_odd_sized_frames():
    vad = EnergyVad(threshold=500, start_ms=40, silence_ms=300)
    pcm = tone(0.2)
    events = [e for i in range(0, len(pcm), 333 * 2 + 1) for e in vad.feed(pcm[i : i + 667])]
    assert events == [VadEvent.SPEECH_START]


def test_audio_resample_keeps_duration_and_pitch():
    out = audio.resample(tone(1.0, 440))
    assert len(out) == 24_000 * 2
    assert audio.describe(out, rate=24_000) == "[1.0 s at 440 Hz]"


def test_audio_synthesize_is_deterministic():
    one = audio.synthesize("abc d", 60)
    assert one == audio.synthesize("abc d", 60)
    samples = np.frombuffer(one, dtype="<i2")
    assert samples.size == 5 * 24_000 * 60 // 1000
    assert not samples[3 * 1440 : 4 * 1440].any()  # the space is silent


def test_model_plan_tool_calls_requires_every_line_valid():
    functions = {"a": False, "b": True}
    calls = model.plan_tool_calls('call a {"x": 1}\n call b {}', functions)
    assert calls == [model.PlannedCall("a", {"x": 1}, False), model.PlannedCall("b", {}, True)]
    assert model.plan_tool_calls('call a {"x": 1}\nhello', functions) is None
    assert model.plan_tool_calls("call a [1]", functions) is None
    assert model.plan_tool_calls("call z {}", functions) is None


def test_model_split_text_rejoins():
    text = "You said: the quick brown fox"
    parts = model.split_text(text, 3)
    assert "".join(parts) == text
    assert len(parts) == 3


def test_tokens_apply_locks_without_mask_overrides_leaves():
    token = AuthToken("auth_tokens/x", 0, 0, 1, 0, {"generationConfig": {"temperature": 0.1}}, None)
    client = {"model": "models/m", "generationConfig": {"temperature": 1.0, "topK": 3}}
    assert apply_locks(token, client)["generationConfig"] == {"temperature": 0.1, "topK": 3}


def test_tokens_apply_locks_mask_removes_unset_locked_field():
    token = AuthToken(
        "auth_tokens/x", 0, 0, 1, 0, {"model": "models/m"}, ["model", "systemInstruction"]
    )
    client = {"model": "models/other", "systemInstruction": {"parts": [{"text": "x"}]}}
    assert apply_locks(token, client) == {"model": "models/m"}
