"""Error-rate alerts (placeholder: the evaluation lands here)."""

from __future__ import annotations


def evaluate_all() -> None:
    """Evaluate every tenant's and agent's rolling error rate; raise or clear alerts."""
