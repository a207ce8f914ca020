"""Small helpers shared by test modules."""

from __future__ import annotations

from typing import Any

from django.test import Client


def logged_in(user: Any) -> Client:
    """A Django test client signed in as ``user`` (admin tests)."""
    client = Client()
    client.force_login(user)
    return client
