"""`--log-events`: the server's frames, one JSON per line, with the credentials masked."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from voice_client.eventlog import EventLog, log_line


def test_resume_tokens_keep_only_their_prefix_and_other_fields_are_kept():
    frame = json.dumps(
        {"type": "session.started", "session_id": "s", "resume_token": "rt_SECRET",
         "agent": {"id": 1, "name": "A", "response_modality": "TEXT", "token": "xx_SECRET"}}
    )  # fmt: skip
    line = log_line(frame)
    assert "SECRET" not in line
    logged = json.loads(line)
    assert logged["resume_token"] == "rt_<masked>"
    assert logged["agent"] == {"id": 1, "name": "A", "response_modality": "TEXT",
                               "token": "xx_<masked>"}  # fmt: skip


def test_a_frame_that_is_not_json_is_one_json_string_line():
    line = log_line("not\njson")
    assert "\n" not in line
    assert json.loads(line) == "not\njson"


def test_the_log_appends_is_private_and_holds_one_line_per_frame(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    for frames in (['{"type":"turn_complete"}'], ['{"type":"pong","id":1}', "[1]"]):
        log = EventLog(path)
        for frame in frames:
            log.write(frame)
        log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"type": "turn_complete"}, {"type": "pong", "id": 1}, [1]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
