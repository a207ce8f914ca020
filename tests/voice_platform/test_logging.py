from __future__ import annotations

import logging

from voice_platform.logging import RedactSecretsFilter, redact


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
