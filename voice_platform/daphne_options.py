"""What Daphne's WebSocket server does not offer: ``failByDrop=False`` and close reasons.

Daphne serves WebSockets with autobahn, which by default fails a connection that breaks
the protocol (a message over ``--websocket-max-message-size``, a text frame that is not
UTF-8) by dropping the TCP connection: the client sees 1006, and the application sees
a disconnect indistinguishable from a network drop, so the session waited to be resumed.
With ``failByDrop=False`` autobahn sends a close frame instead (1009 message too big,
1007 invalid payload, 1002 protocol error), the client echoes it, and the consumer learns
the code and ends the session (``bad_frame``).

Daphne also drops the ``reason`` of an application's ``websocket.close`` (its
``handle_reply`` passes only the code on), so a refused client would learn 4001 but not
why. The protocol subclass below hands the reason to autobahn's ``sendClose``, which puts
it in the close frame (cut to the frame's 123 bytes). A close before the handshake is
accepted stays Daphne's HTTP 403; the platform accepts first, so it never sends one.

The only hook is the factory class Daphne's server module names, so this replaces that
name with a subclass, for the Daphne versions it was checked against. On any other
version it changes nothing and says so at start-up: violations then look like drops, and
such sessions end when their resume window passes (``client_gone``), as before; close
frames carry their code without a reason.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
CHECKED_DAPHNE = ("4.1.", "4.2.")
# Protocol error, invalid payload (text not UTF-8), message too big.
VIOLATION_CODES = frozenset({1002, 1007, 1009})


def install_close_on_protocol_violation() -> bool:
    """Make Daphne close (not drop) connections that violate the protocol, and send the
    application's close reasons; whether it did."""
    try:
        import daphne
        import daphne.server as daphne_server
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    except ImportError:  # not served by Daphne: nothing to adjust
        return False
    version = str(getattr(daphne, "__version__", ""))
    hooks = all(hasattr(WebSocketProtocol, name) for name in ("handle_reply", "sendClose"))
    if (
        not version.startswith(CHECKED_DAPHNE)
        or daphne_server.WebSocketFactory is not WebSocketFactory
        or not hooks
    ):
        log.warning(
            "daphne %s is not one this project checked (%s): protocol violations will drop "
            "connections without a close code, and close frames carry no reason",
            version,
            ", ".join(f"{v}x" for v in CHECKED_DAPHNE),
        )
        return False

    class CloseOnViolationProtocol(WebSocketProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            # A failed connection keeps parsing to read the client's close reply, and
            # would hand the offending message on (Daphne's UTF-8 decode then raised).
            if getattr(self, "failedByMe", False):
                return
            super().onMessage(payload, isBinary)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            # A violation found while closing drops the socket, and autobahn then reports
            # 1006 as if the network had failed: the application gets the code we sent.
            sent = getattr(self, "localCloseCode", None)
            if getattr(self, "failedByMe", False) and sent in VIOLATION_CODES:
                code = sent
            super().onClose(wasClean, code, reason)

        def handle_reply(self, message: dict[str, Any]) -> None:
            # Daphne's own passes only the code on: the reason belongs in the frame too.
            if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
                reason = message.get("reason")
                code = message.get("code")
                self.sendClose(
                    code=1000 if code is None else int(code),
                    reason=reason if isinstance(reason, str) and reason else None,
                )
                return
            super().handle_reply(message)

    class CloseOnViolationFactory(WebSocketFactory):  # type: ignore[misc]
        protocol = CloseOnViolationProtocol

        def setProtocolOptions(self, *args: Any, **options: Any) -> None:
            options.setdefault("failByDrop", False)
            super().setProtocolOptions(*args, **options)

    daphne_server.WebSocketFactory = CloseOnViolationFactory
    return True
