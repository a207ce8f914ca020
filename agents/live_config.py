"""Builds the google-genai ``LiveConnectConfig`` an agent's Live session is opened with."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from google.genai import types

from agents.models import Agent

_START = {
    Agent.Sensitivity.HIGH: types.StartSensitivity.START_SENSITIVITY_HIGH,
    Agent.Sensitivity.LOW: types.StartSensitivity.START_SENSITIVITY_LOW,
}
_END = {
    Agent.Sensitivity.HIGH: types.EndSensitivity.END_SENSITIVITY_HIGH,
    Agent.Sensitivity.LOW: types.EndSensitivity.END_SENSITIVITY_LOW,
}


def _realtime_input_config(agent: Agent) -> types.RealtimeInputConfig:
    detection = types.AutomaticActivityDetection(disabled=not agent.vad_enabled)
    if agent.vad_enabled:
        if agent.vad_start_sensitivity:
            detection.start_of_speech_sensitivity = _START[
                Agent.Sensitivity(agent.vad_start_sensitivity)
            ]
        if agent.vad_end_sensitivity:
            detection.end_of_speech_sensitivity = _END[Agent.Sensitivity(agent.vad_end_sensitivity)]
        detection.prefix_padding_ms = agent.vad_prefix_padding_ms
        detection.silence_duration_ms = agent.vad_silence_duration_ms
    return types.RealtimeInputConfig(
        automatic_activity_detection=detection,
        activity_handling=types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS,
    )


def compression_required(agent: Agent) -> bool:
    """The agent's calls may outlive Gemini's session limit without compression."""
    return agent.max_session_seconds > settings.LIVE_SESSION_LIMIT


def compression_enabled(agent: Agent) -> bool:
    """The agent's sessions run with context-window compression (set, or required)."""
    return agent.compression_trigger_tokens is not None or compression_required(agent)


def live_config_build(
    *,
    agent: Agent,
    resumption_handle: str | None = None,
    function_declarations: Sequence[types.FunctionDeclaration] = (),
) -> types.LiveConnectConfig:
    """The agent's Live setup. The response modality is always explicit (never the default)."""
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality(agent.response_modality)],
        realtime_input_config=_realtime_input_config(agent),
    )
    if agent.system_instruction:
        config.system_instruction = types.Content(
            role="user", parts=[types.Part(text=agent.system_instruction)]
        )
    if agent.temperature is not None:
        config.temperature = agent.temperature
    if agent.voice and agent.response_modality == Agent.Modality.AUDIO:
        config.speech_config = types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=agent.voice)
            )
        )
    if agent.input_transcription:
        config.input_audio_transcription = types.AudioTranscriptionConfig()
    if agent.output_transcription:
        config.output_audio_transcription = types.AudioTranscriptionConfig()
    if agent.compression_trigger_tokens is not None:
        config.context_window_compression = types.ContextWindowCompressionConfig(
            trigger_tokens=agent.compression_trigger_tokens,
            sliding_window=types.SlidingWindow(target_tokens=agent.compression_target_tokens),
        )
    elif compression_required(agent):
        # Without compression Gemini ends an audio session at 15 minutes: a call allowed to
        # run longer gets it with the service's defaults.
        config.context_window_compression = types.ContextWindowCompressionConfig(
            sliding_window=types.SlidingWindow()
        )
    if agent.session_resumption:
        config.session_resumption = types.SessionResumptionConfig(handle=resumption_handle)
    if function_declarations:
        config.tools = [types.Tool(function_declarations=list(function_declarations))]
    return config
