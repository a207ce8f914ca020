"""Keeps credentials out of logs, whatever logger emitted them."""

from __future__ import annotations

import logging
import re

# ?token=, ?resume=, ?key=, ?access_token= in request lines; Bearer/Token headers; our keys.
_PATTERNS = [
    re.compile(r"(?i)([?&](?:token|resume|key|access_token)=)[^&\s\"']+"),
    re.compile(r"(?i)(\b(?:bearer|token)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(vpk_[0-9a-f]{8,12}_)[A-Za-z0-9_-]+"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
