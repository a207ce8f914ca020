"""Usage rollup (placeholder: the rollup lands here)."""

from __future__ import annotations

import datetime


def rollup_day(*, tenant_id: int, day: datetime.date) -> int:
    """Recompute one tenant's UsageDaily rows of ``day`` (UTC) from its sessions; rows written."""
    return 0


def rollup_recent() -> None:
    """The periodic job: today and yesterday (UTC) for every tenant with sessions then."""
