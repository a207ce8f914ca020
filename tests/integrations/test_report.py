"""The events of a REAL session (the consumer, the SDK, the emulator): session.started,
tool.call.finished and session.ended with its post-call report, delivered signed to a local
receiver by the embedded in-process delivery, the report matching what the database says."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from channels.db import database_sync_to_async
from standardwebhooks import Webhook

from analytics.rollup import AUDIO_IN_BYTES_PER_SECOND, AUDIO_OUT_BYTES_PER_SECOND
from integrations.models import WebhookDelivery
from sessions.models import TranscriptEntry, VoiceSession
from tests.factories import AgentFactory
from tests.integrations.conftest import make_endpoint
from tests.sessions.conftest import issue_token, open_client, speak
from tools.models import ToolCallRecord
from tools.services import agent_tool_create, tool_sync_registry
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def audio_agent_with_clock(tenant: Any) -> Any:
    tool_sync_registry()
    agent = AgentFactory(
        tenant=tenant, response_modality="AUDIO", input_transcription=True,
        output_transcription=True, vad_silence_duration_ms=500,
    )  # fmt: skip
    with tenant_scope(tenant.pk):
        agent_tool_create(tenant=tenant, agent=agent, tool_name="get_current_time")
    return agent


@database_sync_to_async
def deliveries() -> list[WebhookDelivery]:
    return list(WebhookDelivery.unscoped.order_by("id"))


async def all_delivered(count: int, timeout: float = 20) -> list[WebhookDelivery]:
    async with asyncio.timeout(timeout):
        while True:
            found = await deliveries()
            if len(found) >= count and all(d.status == "succeeded" for d in found):
                return found
            assert not any(d.status == "failed" for d in found), [d.last_error for d in found]
            await asyncio.sleep(0.1)


@database_sync_to_async
def stored(session_id: str) -> tuple[VoiceSession, list[TranscriptEntry], list[ToolCallRecord]]:
    session = VoiceSession.unscoped.get(pk=session_id)
    transcript = list(TranscriptEntry.unscoped.filter(session=session).order_by("seq"))
    calls = list(ToolCallRecord.unscoped.filter(session_ref=session.pk).order_by("id"))
    return session, transcript, calls


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def test_a_real_session_sends_its_events_and_a_complete_post_call_report(
    alice, live_settings, live_emulator, webhook_receiver, tool_threads
):
    live_settings.TOOL_EXECUTION = "inprocess"
    _, secret = await database_sync_to_async(make_endpoint)(alice.tenant, webhook_receiver.url())
    agent = await audio_agent_with_clock(alice.tenant)
    token = await issue_token(agent, user="caller-7", metadata={"crm": "A-1"})
    client = await open_client(f"token={token}")
    session_id = (await client.until("session.started"))["session_id"]
    # A typed turn calling a tool, then a spoken turn, then close.
    await client.send(type="text", text='call get_current_time {"timezone": "Europe/Berlin"}')
    await client.until("tool.finished")
    await client.until("turn_complete")
    await speak(client, speech_ms=600, silence_ms=1200)
    await client.until("turn_complete")
    await client.send(type="close")
    await client.until_closed()

    found = await all_delivered(3)
    assert [d.event_type for d in found] == ["session.started", "tool.call.finished",
                                             "session.ended"]  # fmt: skip
    assert len(webhook_receiver.requests) == 3
    received = {}
    for request in webhook_receiver.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        payload = Webhook(secret).verify(request["body"], headers)  # every one is signed
        received[payload["type"]] = payload
        assert headers["webhook-id"] in {d.msg_id for d in found}

    session, transcript, calls = await stored(session_id)
    (call,) = calls
    assert call.status == "succeeded"
    assert call.tool_name == "get_current_time"

    started = received["session.started"]["data"]
    assert started == {
        "session_id": session_id, "agent": {"id": agent.pk, "name": agent.name},
        "user_id": "caller-7", "metadata": {"crm": "A-1"}, "started_at": iso(session.started_at),
    }  # fmt: skip

    finished = received["tool.call.finished"]["data"]
    assert (finished["id"], finished["call_id"], finished["session_id"]) == (
        call.pk, call.call_id, session_id,
    )  # fmt: skip
    assert (finished["status"], finished["duration_ms"]) == ("succeeded", call.duration_ms)
    assert finished["arguments"] == {"timezone": "Europe/Berlin"}

    report = received["session.ended"]["data"]
    assert report["session_id"] == session_id
    assert (report["status"], report["end_reason"]) == (session.status, session.end_reason)
    assert report["end_reason"] == "client_closed"
    assert report["ended_at"] == iso(session.ended_at)
    assert report["duration_seconds"] == (session.ended_at - session.started_at).total_seconds()
    # The session's own span: at least from its first transcript line to its last.
    spoken = [entry["at"] for entry in report["transcript"]]
    span = (datetime.fromisoformat(spoken[-1]) - datetime.fromisoformat(spoken[0])).total_seconds()
    assert report["duration_seconds"] >= span > 0
    # The transcript: the typed words, what was heard, the model's words, in order.
    assert report["transcript"] == [
        {"seq": e.seq, "role": e.role, "kind": e.kind, "text": e.text, "at": iso(e.at)}
        for e in transcript
    ]
    kinds = [(e["role"], e["kind"]) for e in report["transcript"]]
    assert ("user", "text") in kinds
    assert ("user", "speech") in kinds
    assert ("model", "speech") in kinds
    assert report["transcript"][0]["text"].startswith("call get_current_time")
    # The tool call, as the tool event told it.
    assert [c["id"] for c in report["tool_calls"]] == [call.pk]
    assert report["tool_calls"][0] == finished
    # Usage and latency: the stored counters and per-turn timings.
    usage = report["usage"]
    assert usage["turns"] == session.turns == 2
    assert usage["tool_calls"] == session.tool_calls == 1
    assert (usage["interruptions"], usage["reconnects"], usage["errors"]) == (
        session.interruptions, session.reconnects, session.errors,
    )  # fmt: skip
    assert usage["total_tokens"] == session.total_tokens > 0
    assert usage["audio_in_seconds"] == session.client_bytes_in / AUDIO_IN_BYTES_PER_SECOND
    assert usage["audio_in_seconds"] >= 1.8  # 600 ms of speech and 1200 ms of silence
    assert usage["audio_out_seconds"] == session.model_bytes_out / AUDIO_OUT_BYTES_PER_SECOND > 0
    latency = report["latency"]
    assert len(latency["turns"]) == 2
    assert latency["turns"] == json.loads(json.dumps(session.turn_timings))
    assert [t["speech_end_source"] for t in latency["turns"]] == ["text", "vad"]
    assert latency["turns"][0]["tool_ms"] > 0
    assert latency["summary"] == json.loads(json.dumps(session.timing_summary()))
    assert latency["summary"]["reply_in"]["turns"] == 2
    assert latency["first_response_ms_p50"] == session.first_response_ms_p50
