"""Who a live connection belongs to, as telemetry sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionLabels:
    tenant_id: int
    tenant_slug: str
    agent_id: int | None
    session_id: str
    model: str
    modality: str  # "AUDIO" | "TEXT"
