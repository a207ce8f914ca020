"""`manage.py loadtest --echo` against the emulator in echo mode: every frame is timed."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings() -> dict[str, Any]:
    return {"pace": 1.0, "echo_frames": True}


async def test_echo_mode_reports_the_added_latency_per_frame(platform):
    code, report, output = await platform.loadtest(
        "--callers", "2", "--spawn-rate", "10", "--duration", "4", "--echo",
        "--server-pid", str(platform.pid), "--max-error-rate", "0", "--no-warm-up",
    )  # fmt: skip
    print(output)
    assert code == 0, output
    frames = report["frames"]
    added = frames["added_latency"]
    assert added["measured"] is True
    # Every frame sent came back (bar the last few, in flight at the hang-up).
    assert 0 < frames["sent"] - 10 <= frames["echoed"] <= frames["sent"]
    assert added["round_trip"]["count"] == frames["echoed"]
    rtt, up, down = added["round_trip"], added["up"], added["down"]
    assert 0 < rtt["p50_ms"] <= rtt["p95_ms"] <= rtt["max_ms"]
    # The two legs, split at the emulator's stamp, add up to the round trip.
    assert up["p50_ms"] < rtt["p50_ms"]
    assert down["p50_ms"] < rtt["p50_ms"]
    # Spoken turns are not answered in echo mode: no turn latency, and no error for it.
    assert report["latency"]["turn"]["count"] == 0
    assert report["errors"]["total"] == 0
    assert report["server"]["source"] == "pid"
    assert report["server"]["measured"]
