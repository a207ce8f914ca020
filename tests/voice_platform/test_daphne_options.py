"""The one place we adjust Daphne: checked against the installed version, with a fallback."""

from __future__ import annotations

import daphne
import daphne.server as daphne_server
import pytest
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

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


class _Sent:
    def __init__(self) -> None:
        self.closes: list[tuple[int | None, str | None]] = []

    def __call__(self, code: int | None = None, reason: str | None = None) -> None:
        self.closes.append((code, reason))


def _open_protocol(sent: _Sent):
    protocol_class = daphne_server.WebSocketFactory.protocol
    protocol = protocol_class.__new__(protocol_class)  # no transport: only the reply path
    protocol.state = protocol_class.STATE_OPEN
    protocol.sendClose = sent
    return protocol


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "websocket.close", "code": 4001, "reason": "invalid token"},
         (4001, "invalid token")),
        ({"type": "websocket.close", "code": 4009}, (4009, None)),
        ({"type": "websocket.close", "reason": ""}, (1000, None)),
    ],
)  # fmt: skip
def test_it_puts_the_applications_close_reason_in_the_close_frame(
    restore_factory, message, expected
):
    assert install_close_on_protocol_violation() is True
    sent = _Sent()
    _open_protocol(sent).handle_reply(message)
    assert sent.closes == [expected]


def test_daphnes_own_reply_path_drops_the_reason(restore_factory):
    """Why the adjustment exists: if Daphne ever passes reasons on, this fails and the
    override can go."""
    sent = _Sent()
    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    protocol.state = WebSocketProtocol.STATE_OPEN
    protocol.sendClose = sent
    protocol.handle_reply({"type": "websocket.close", "code": 4001, "reason": "invalid token"})
    assert sent.closes == [(4001, None)]


def test_it_leaves_a_daphne_without_the_reply_hook_alone(restore_factory, monkeypatch, caplog):
    monkeypatch.delattr(WebSocketProtocol, "handle_reply")
    assert install_close_on_protocol_violation() is False
    assert daphne_server.WebSocketFactory is WebSocketFactory
    assert "close frames carry no reason" in caplog.text
