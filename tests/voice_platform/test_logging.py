"""Log lines: JSON and console formats, the session's ids, credentials redacted
(docs/logging.md). The scan of a whole session's logs is in test_logging_session.py."""

from __future__ import annotations

import copy
import io
import json
import logging
import runpy
from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import dictConfig
from pathlib import Path

import pytest
import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from voice_platform.logging import RedactSecretsFilter, redact
from voice_platform.observability import log_context

BASE_SETTINGS = Path(__file__).resolve().parents[2] / "voice_platform" / "settings" / "base.py"

# Shaped like the platform's own credentials (values made up for these tests).
API_KEY = "vpk_0a1b2c3d_" + "K" * 43
CLIENT_TOKEN = "ct_" + "c" * 43
RESUME_TOKEN = "rt_" + "r" * 43
GEMINI_KEY = "AIza" + "G" * 35


@contextmanager
def captured_logs(level: str = "DEBUG") -> Iterator[dict[str, io.StringIO]]:
    """Everything logged while open, through ``settings.LOGGING``'s own handler (formatter,
    filters, logger levels) at ``level``: one copy rendered as JSON, one as console text."""
    streams = {"json": io.StringIO(), "console": io.StringIO()}
    config = copy.deepcopy(settings.LOGGING)
    handler = config["handlers"].pop("console")
    for kind, stream in streams.items():
        config["handlers"][kind] = {**handler, "formatter": kind, "stream": stream}
    config["root"] = {"handlers": list(streams), "level": level}
    dictConfig(config)
    try:
        yield streams
    finally:
        dictConfig(settings.LOGGING)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    """Every line of the JSON copy, parsed (a line that is not one JSON object fails)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_logging_json_line_has_the_fields_and_the_ids():
    with captured_logs() as streams:
        with log_context.bound(tenant=7, agent=8, session="s-1", turn=3):
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("sessions.bridge").exception(
                    "session %s failed", "s-1", extra={"reason": "test"}
                )
        logging.getLogger("outside").info("no session here")
    inside, outside = json_lines(streams["json"])
    assert inside["event"] == "session s-1 failed"
    assert inside["level"] == "error"
    assert inside["logger"] == "sessions.bridge"
    assert str(inside["timestamp"]).endswith("Z")
    assert "ValueError: boom" in str(inside["exception"])
    assert inside["reason"] == "test"
    assert (inside["tenant"], inside["agent"], inside["session"], inside["turn"]) == (
        7, 8, "s-1", 3
    )  # fmt: skip
    assert "session" not in outside  # restored after the block


def test_logging_console_line_is_readable_with_the_ids():
    with captured_logs() as streams, log_context.bound(tenant=7, session="s-1", turn=2):
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("tools.execution").exception("tool %s failed", "t")
    text = streams["console"].getvalue()
    first = text.splitlines()[0]
    assert "tool t failed" in first
    assert "error" in first
    assert "tools.execution" in first
    assert {"tenant=7", "session=s-1", "turn=2"} <= set(first.split())
    assert "ValueError: boom" in text
    assert not text.lstrip().startswith("{")


def test_logging_field_passed_by_the_call_site_wins_over_the_context():
    with captured_logs() as streams, log_context.bound(turn=2):
        logging.getLogger("t").info("x", extra={"turn": 5})
    (line,) = json_lines(streams["json"])
    assert line["turn"] == 5


@pytest.mark.parametrize("kind", ["json", "console"])
def test_logging_redacts_credentials_in_message_fields_and_tracebacks(kind):
    log = logging.getLogger("sessions.consumers")
    with captured_logs() as streams:
        log.info("GET /ws/v1/live?token=%s&x=1", CLIENT_TOKEN)
        log.info("> x-goog-api-key: %s", GEMINI_KEY)
        log.info(
            "issued",
            extra={
                "resume_token": "opaque-value-1",  # by its name, whatever its shape
                "detail": {"header": f"Authorization: Bearer {API_KEY}", "next": RESUME_TOKEN},
            },
        )
        try:
            raise RuntimeError(f"upstream refused key={GEMINI_KEY}")
        except RuntimeError:
            log.exception("connect failed")
        structlog.get_logger("native").info("structlog too", token="opaque-value-2")
    text = streams[kind].getvalue()
    for secret in (CLIENT_TOKEN, GEMINI_KEY, API_KEY, RESUME_TOKEN, "opaque-value-1",
                   "opaque-value-2", "K" * 20, "r" * 20, "G" * 20):  # fmt: skip
        assert secret not in text
    assert "[redacted]" in text
    for kept in ("x=1", "connect failed", "structlog too"):
        assert kept in text


def test_logging_structlog_logger_renders_through_the_same_handler():
    with captured_logs() as streams, log_context.bound(session="s-9"):
        structlog.get_logger("native").warning("hello", items=3)
    (line,) = json_lines(streams["json"])
    assert (line["event"], line["level"], line["logger"]) == ("hello", "warning", "native")
    assert (line["items"], line["session"]) == (3, "s-9")


def test_logging_wire_loggers_stay_at_info_when_debugging():
    # Their DEBUG lines are handshake headers and whole frames: keys and user content.
    with captured_logs("DEBUG") as streams:
        logging.getLogger("websockets.client").debug("> x-goog-api-key: plain-key-value")
        logging.getLogger("httpcore.http11").debug("send_request_body.started")
        logging.getLogger("sessions.bridge").debug("a platform debug line")
    text = streams["json"].getvalue()
    assert "plain-key-value" not in text
    assert "send_request_body" not in text
    assert "a platform debug line" in text


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [("LOG_FORMAT", "xml", "LOG_FORMAT must be json or console"),
     ("LOG_LEVEL", "loud", "LOG_LEVEL must be a level name")],
)  # fmt: skip
def test_logging_settings_refuse_an_unknown_value(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("SECRET_KEY", "x" * 50)
    with pytest.raises(ImproperlyConfigured, match=message):
        runpy.run_path(str(BASE_SETTINGS))


def test_redact_strips_tokens_keys_and_bearer_values():
    line = (
        'GET /ws/v1/live?token=abcdef123456&x=1 "Authorization: Bearer vpk_0a1b2c3d_SeCrEt-Value" '
        "resume=zzz9 vpk_deadbeef0123_Another_Secret"
    )
    cleaned = redact(line)
    for secret in ("abcdef123456", "SeCrEt-Value", "Another_Secret"):
        assert secret not in cleaned
    assert "x=1" in cleaned
    assert "vpk_deadbeef0123_[redacted]" in cleaned


def test_redact_filter_rewrites_formatted_record():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "open %s", ("?token=s3cr3t",), None)
    RedactSecretsFilter().filter(record)
    assert "s3cr3t" not in record.getMessage()
