"""The one place we adjust Daphne: checked against the installed version, with a fallback."""

from __future__ import annotations

import daphne
import daphne.server as daphne_server
import pytest
from daphne.ws_protocol import WebSocketFactory

from voice_platform.daphne_options import install_close_on_protocol_violation


@pytest.fixture
def restore_factory():
    yield
    daphne_server.WebSocketFactory = WebSocketFactory


def test_it_makes_daphne_close_instead_of_drop_on_the_checked_version(restore_factory):
    assert install_close_on_protocol_violation() is True
    factory_class = daphne_server.WebSocketFactory
    assert issubclass(factory_class, WebSocketFactory)
    factory = factory_class(server_class=None)
    factory.setProtocolOptions(autoPingTimeout=5)
    assert factory.failByDrop is False
    assert factory.autoPingTimeout == 5  # Daphne's own options still apply


def test_it_leaves_an_unchecked_daphne_alone_and_says_so(restore_factory, monkeypatch, caplog):
    monkeypatch.setattr(daphne, "__version__", "9.0.0")
    assert install_close_on_protocol_violation() is False
    assert daphne_server.WebSocketFactory is WebSocketFactory
    assert "is not one this project checked" in caplog.text
