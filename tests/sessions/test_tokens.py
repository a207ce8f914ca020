from __future__ import annotations

import threading

import pytest
from django.db import connection

from conftest import require_postgres
from sessions.tokens import client_token_consume, client_token_issue
from voice_platform.tenancy.scope import tenant_scope


@pytest.mark.django_db(transaction=True)
def test_token_consume_is_atomic_under_concurrent_connects(alice, alice_agent):
    """Eight threads race for a 3-use token: exactly three win (PostgreSQL in CI)."""
    require_postgres()
    with tenant_scope(alice.tenant.pk):
        token = client_token_issue(
            tenant=alice.tenant, agent=alice_agent, end_user_id="u", uses=3
        ).token
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        try:
            with tenant_scope(alice.tenant.pk):
                barrier.wait()
                results.append(client_token_consume(token=token))
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True] * 3
    token.refresh_from_db()
    assert token.uses_left == 0
