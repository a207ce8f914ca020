from __future__ import annotations

import pytest
from google.genai import types

from agents.live_config import live_config_build
from agents.models import Agent
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_live_config_minimal_agent_is_explicit_about_modality():
    agent = AgentFactory.build(response_modality=Agent.Modality.TEXT, session_resumption=False)
    config = live_config_build(agent=agent)
    assert config.response_modalities == [types.Modality.TEXT]
    assert config.system_instruction is None
    assert config.temperature is None
    assert config.speech_config is None
    assert config.input_audio_transcription is None
    assert config.output_audio_transcription is None
    assert config.context_window_compression is None
    assert config.session_resumption is None
    assert config.tools is None
    detection = config.realtime_input_config.automatic_activity_detection
    assert detection.disabled is False


def test_live_config_full_agent_field_by_field():
    agent = AgentFactory.build(
        response_modality=Agent.Modality.AUDIO,
        voice="Kore",
        system_instruction="Be kind.",
        temperature=0.3,
        input_transcription=True,
        output_transcription=True,
        compression_trigger_tokens=20000,
        compression_target_tokens=10000,
        session_resumption=True,
        vad_enabled=True,
        vad_start_sensitivity="HIGH",
        vad_end_sensitivity="LOW",
        vad_prefix_padding_ms=40,
        vad_silence_duration_ms=300,
    )
    config = live_config_build(agent=agent, resumption_handle="h-1")
    assert config.response_modalities == [types.Modality.AUDIO]
    assert config.system_instruction == types.Content(
        role="user", parts=[types.Part(text="Be kind.")]
    )
    assert config.temperature == 0.3
    assert config.speech_config.voice_config.prebuilt_voice_config.voice_name == "Kore"
    assert config.input_audio_transcription == types.AudioTranscriptionConfig()
    assert config.output_audio_transcription == types.AudioTranscriptionConfig()
    assert config.context_window_compression.trigger_tokens == 20000
    assert config.context_window_compression.sliding_window.target_tokens == 10000
    assert config.session_resumption.handle == "h-1"
    ric = config.realtime_input_config
    assert ric.activity_handling == types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS
    det = ric.automatic_activity_detection
    assert det.disabled is False
    assert det.start_of_speech_sensitivity == types.StartSensitivity.START_SENSITIVITY_HIGH
    assert det.end_of_speech_sensitivity == types.EndSensitivity.END_SENSITIVITY_LOW
    assert det.prefix_padding_ms == 40
    assert det.silence_duration_ms == 300


def test_live_config_vad_off_means_manual_activity():
    agent = AgentFactory.build(vad_enabled=False, vad_silence_duration_ms=300)
    det = live_config_build(agent=agent).realtime_input_config.automatic_activity_detection
    assert det.disabled is True
    assert det.silence_duration_ms is None


def test_live_config_voice_ignored_for_text_agents():
    agent = AgentFactory.build(response_modality=Agent.Modality.TEXT, voice="Kore")
    assert live_config_build(agent=agent).speech_config is None


def test_live_config_resumption_without_handle_is_empty_config():
    config = live_config_build(agent=AgentFactory.build(session_resumption=True))
    assert config.session_resumption == types.SessionResumptionConfig()


def test_live_config_declares_given_functions():
    decl = types.FunctionDeclaration(name="get_current_time", description="time")
    config = live_config_build(agent=AgentFactory.build(), function_declarations=[decl])
    assert config.tools == [types.Tool(function_declarations=[decl])]
