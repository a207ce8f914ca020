from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sessions.models import ClientToken, TranscriptEntry, VoiceSession
from sessions.tokens import MAX_EXPIRE_SECONDS, MAX_USES
from sessions.turn_timing import SPEECH_END_SOURCES


class ClientTokenCreateSerializer(serializers.Serializer[dict[str, Any]]):
    user_id = serializers.CharField(max_length=200)
    expire_seconds = serializers.IntegerField(
        default=1800, min_value=1, max_value=MAX_EXPIRE_SECONDS
    )
    new_session_expire_seconds = serializers.IntegerField(
        default=60, min_value=1, max_value=MAX_EXPIRE_SECONDS
    )
    uses = serializers.IntegerField(default=1, min_value=1, max_value=MAX_USES)
    metadata = serializers.DictField(default=dict)


class ClientTokenIssuedSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    new_session_expires_at = serializers.DateTimeField()
    uses = serializers.IntegerField()
    websocket_url = serializers.CharField()


class ClientTokenSerializer(serializers.ModelSerializer[ClientToken]):
    agent_id = serializers.IntegerField(read_only=True)
    user_id = serializers.CharField(source="end_user_id", read_only=True)

    class Meta:
        model = ClientToken
        fields = (
            "id", "agent_id", "user_id", "prefix", "uses", "uses_left", "metadata",
            "expires_at", "new_session_expires_at", "created_at", "revoked_at",
        )  # fmt: skip
        read_only_fields = fields


class ReconnectEntrySerializer(serializers.Serializer[dict[str, Any]]):
    """One upstream reconnect (docs/live-resilience.md lists the causes)."""

    at = serializers.DateTimeField(read_only=True)
    cause = serializers.CharField(read_only=True)
    gap_ms = serializers.IntegerField(read_only=True, allow_null=True)
    fresh_context = serializers.BooleanField(read_only=True)
    resumed = serializers.BooleanField(read_only=True)


class TurnTimingSerializer(serializers.Serializer[dict[str, Any]]):
    """One turn's timing, in ms from the end of the user's speech (docs/observability.md)."""

    turn = serializers.IntegerField(read_only=True)
    at = serializers.DateTimeField(read_only=True)
    speech_end_source = serializers.ChoiceField(choices=SPEECH_END_SOURCES, read_only=True)
    reply_in_ms = serializers.FloatField(read_only=True, allow_null=True)
    reply_out_ms = serializers.FloatField(read_only=True, allow_null=True)
    playback_ms = serializers.FloatField(read_only=True, allow_null=True)
    tool_ms = serializers.FloatField(read_only=True)
    reconnect_gap_ms = serializers.FloatField(read_only=True)
    audio = serializers.BooleanField(read_only=True)
    outcome = serializers.ChoiceField(
        choices=["complete", "interrupted", "unanswered"], read_only=True
    )


class PercentilesSerializer(serializers.Serializer[dict[str, Any]]):
    p50_ms = serializers.FloatField(read_only=True, allow_null=True)
    p95_ms = serializers.FloatField(read_only=True, allow_null=True)
    turns = serializers.IntegerField(read_only=True, help_text="Turns with this figure.")


class TimingSummarySerializer(serializers.Serializer[dict[str, Any]]):
    """p50/p95 of each per-turn figure over the session's kept turns."""

    reply_in = PercentilesSerializer(read_only=True)
    reply_out = PercentilesSerializer(read_only=True)
    playback = PercentilesSerializer(read_only=True)
    tool = PercentilesSerializer(read_only=True)
    reconnect_gap = PercentilesSerializer(read_only=True)


class VoiceSessionSerializer(serializers.ModelSerializer[VoiceSession]):
    reconnect_log = ReconnectEntrySerializer(many=True, read_only=True)
    timing = TimingSummarySerializer(source="timing_summary", read_only=True)
    agent_id = serializers.IntegerField(read_only=True, allow_null=True)
    user_id = serializers.CharField(source="end_user_id", read_only=True)
    first_response_ms_p50 = serializers.FloatField(read_only=True, allow_null=True)
    first_response_ms_p95 = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = VoiceSession
        fields: tuple[str, ...] = (
            "id", "agent_id", "user_id", "metadata", "status", "end_reason", "started_at",
            "ended_at", "client_detached_at", "client_frames_in", "client_bytes_in",
            "model_frames_out", "model_bytes_out", "dropped_audio_frames", "turns",
            "interruptions", "tool_calls", "errors", "reconnects", "prompt_tokens",
            "response_tokens", "total_tokens", "first_response_ms_p50", "first_response_ms_p95",
            "timing", "reconnect_log",
        )  # fmt: skip
        read_only_fields = fields


class VoiceSessionDetailSerializer(VoiceSessionSerializer):
    """One session: with every kept turn's timing (lists carry only the summary)."""

    turn_timings = TurnTimingSerializer(many=True, read_only=True)

    class Meta(VoiceSessionSerializer.Meta):
        fields = (*VoiceSessionSerializer.Meta.fields, "turn_timings")
        read_only_fields = fields


class TranscriptEntrySerializer(serializers.ModelSerializer[TranscriptEntry]):
    class Meta:
        model = TranscriptEntry
        fields = ("seq", "role", "kind", "text", "at")
        read_only_fields = fields
