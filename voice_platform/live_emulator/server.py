"""The emulator server: TLS, routing, authentication and the `setup` handshake.

Pure asyncio + websockets (no Django), so it runs in a test's event loop, a thread, a
bench process or behind `manage.py live_emulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voice_platform.live_emulator import certs, protocol, rest
from voice_platform.live_emulator.admission import OpenConnections, SetupRejected, check_refusals
from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.delivery import Outbox
from voice_platform.live_emulator.faults import FAULTS_HEADER, FaultRegistry, Faults
from voice_platform.live_emulator.pong import LiveConnection, PongPolicy
from voice_platform.live_emulator.recorder import PaceStats, Recorder, SessionRecord
from voice_platform.live_emulator.resumption import HandleStore, SessionState
from voice_platform.live_emulator.session import LiveSession, new_session_id
from voice_platform.live_emulator.tokens import AuthToken, TokenRejected, TokenStore, apply_locks

logger = logging.getLogger(__name__)

LIVE_PATH = re.compile(
    r"^/+(?:.*/)?ws/google\.ai\.generativelanguage\.(v1alpha|v1beta|v1)"
    r"\.GenerativeService\.(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_MAX_CLIENT_FRAME = 16 * 2**20  # the real service takes big video frames; be generous

__all__ = ["Emulator", "SetupRejected"]


class Emulator:
    """A Gemini Live emulator. `await start()`, then point the SDK at `base_url`."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.recorder = Recorder(
            enabled=self.config.record, max_messages=self.config.record_max_messages
        )
        self.tokens = TokenStore(
            expire=self.config.token_expire,
            new_session_window=self.config.token_new_session_window,
            max_ahead=self.config.token_max_ahead,
        )
        self.handles = HandleStore(self.config.scaled(self.config.handle_ttl))
        # Lateness of paced reply chunks, across all sessions (the bench reads it).
        self.pace_stats = PaceStats()
        self.faults = FaultRegistry(self.config.faults)
        # Every random choice (stalls, delays, refusals) derives from this, per connection,
        # so a run with `random_seed` set is reproducible.
        self.rng = random.Random(self.config.random_seed)  # noqa: S311 - not security
        self.open_connections = OpenConnections(
            dead_peer_timeout=self.config.scaled(self.config.dead_peer_timeout)
        )
        self.port = self.config.port
        self.cert_path, self.key_path = Path(), Path()
        self._server: Server | None = None
        self._connections: dict[ServerConnection, SessionRecord] = {}
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - only to print a usable URL
            host = "127.0.0.1"
        return f"https://{host}:{self.port}"

    async def start(self) -> None:
        self.cert_path, self.key_path = certs.ensure_cert(
            self.config.cert_dir, self.config.cert_names
        )
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            ssl=certs.server_ssl_context(self.cert_path, self.key_path),
            process_request=self._process_request,
            create_connection=LiveConnection,
            compression="deflate" if self.config.compression else None,
            max_size=_MAX_CLIENT_FRAME,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop at once: open sessions are dropped, as if the server went away."""
        self.abort_connections()
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        if self._server is not None:
            await self._server.serve_forever()

    def abort_connections(self) -> None:
        """Drop every open connection without a close frame (the client sees 1006)."""
        for connection, record in list(self._connections.items()):
            if record.closed_by is None:
                record.closed_by = "server"
            connection.transport.abort()

    def queue_faults(self, faults: Faults) -> None:
        """The next connection (whatever its headers) gets these faults."""
        self.faults.queue_next(faults)

    # --- HTTP ----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # every upgrade is accepted; errors come as close frames
        return rest.handle_http(connection, request, config=self.config, tokens=self.tokens)

    # --- WebSocket -----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        request = ws.request
        if request is None:  # cannot happen after a completed handshake
            return
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        try:
            faults = self.faults.for_connection(headers.get(FAULTS_HEADER))
        except ValueError:
            faults, bad_faults = Faults(), True
        else:
            bad_faults = False
        record = self.recorder.new(path=request.path, headers=headers, faults=faults)
        self._connections[ws] = record
        rng = random.Random(self.rng.getrandbits(64))  # noqa: S311 - not security
        pongs = PongPolicy(record, delay=self._pong_delay(), rng=rng)
        if isinstance(ws, LiveConnection):
            ws.pongs = pongs
        outbox = Outbox(ws, record, latency=self.config.latency, jitter=self.config.jitter, rng=rng)
        try:
            setup, state = await self._handshake(
                ws, record, faults=faults, bad_faults=bad_faults, rng=rng
            )
            self.open_connections.add(ws, record)
            if faults.stall_setup > 0 and await self._stalled(ws, faults.stall_setup):
                return
            await outbox.send(protocol.setup_complete())
            session = LiveSession(
                ws,
                config=self.config,
                setup=setup,
                state=state,
                record=record,
                handles=self.handles,
                faults=faults,
                pace_stats=self.pace_stats,
                rng=rng,
                outbox=outbox,
                pongs=pongs,
            )
            await session.run()
        except SetupRejected as exc:
            record.close(exc.code, exc.reason, exc.by)
            await ws.close(exc.code, protocol.truncate_reason(exc.reason))
        except ConnectionClosed:
            pass
        finally:
            pongs.close()
            outbox.discard()
            self._connections.pop(ws, None)
            if task is not None:
                self._handlers.discard(task)
            if ws.close_code is not None:
                record.close(ws.close_code, ws.close_reason, "client")
            record.close(record.close_code, record.close_reason)
            record.closed_at = time.monotonic()
            self.open_connections.release(ws, record)

    def _pong_delay(self) -> tuple[float, float]:
        low, high = self.config.pong_delay
        return self.config.scaled(low), self.config.scaled(high)

    @staticmethod
    async def _stalled(ws: ServerConnection, seconds: float) -> bool:
        """Hold `setupComplete` back; True if the client gave up meanwhile."""
        timeout = None if math.isinf(seconds) else seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), timeout)
        return ws.close_code is not None or ws.state.name == "CLOSED"

    async def _handshake(
        self,
        ws: ServerConnection,
        record: SessionRecord,
        *,
        faults: Faults,
        bad_faults: bool,
        rng: random.Random,
    ) -> tuple[dict[str, Any], SessionState]:
        """Read and validate `setup`; returns the effective setup and the session state."""
        request = ws.request
        if request is None:
            raise SetupRejected(protocol.CLOSE_INTERNAL, "No handshake request.")
        route = LIVE_PATH.match(request.path.partition("?")[0])
        try:
            first = await asyncio.wait_for(ws.recv(), self.config.setup_timeout)
        except TimeoutError as exc:
            raise SetupRejected(protocol.CLOSE_INVALID_ARGUMENT, "No setup received.") from exc
        # Refuse only now: closing before the client's `setup` makes the SDK's send fail
        # with a raw ConnectionClosed instead of an APIError.
        if route is None:
            raise SetupRejected(protocol.CLOSE_POLICY, protocol.REASON_METHOD_NOT_FOUND)
        if bad_faults:
            raise SetupRejected(protocol.CLOSE_INVALID_ARGUMENT, "Bad x-emulator-faults header.")
        if faults.refuse_code is not None:
            raise SetupRejected(faults.refuse_code, faults.refuse_reason, by="fault")
        api_version = route.group(1)
        try:
            message = protocol.parse_client_message(first)
        except protocol.ProtocolError as exc:
            raise SetupRejected(
                protocol.CLOSE_INVALID_ARGUMENT, protocol.REASON_INVALID_ARGUMENT
            ) from exc
        client_setup = message.get("setup")
        if not isinstance(client_setup, dict):
            raise SetupRejected(protocol.CLOSE_INVALID_ARGUMENT, protocol.REASON_INVALID_ARGUMENT)
        record.client_setup = client_setup

        token = self._credentials(request, record)
        setup = apply_locks(token, client_setup) if token is not None else client_setup
        record.setup = setup
        model_name = setup.get("model")
        if not isinstance(model_name, str) or not model_name.startswith("models/"):
            raise SetupRejected(protocol.CLOSE_INVALID_ARGUMENT, protocol.REASON_INVALID_ARGUMENT)
        short = model_name.removeprefix("models/")
        if not short or short not in self.config.models:
            raise SetupRejected(
                protocol.CLOSE_POLICY,
                f"{model_name} is not found for API version {api_version}, or is not supported "
                "for bidiGenerateContent. Call ListModels to see the list of available models "
                "and their supported methods.",
            )

        now = self.config.clock()
        resumption = setup.get("sessionResumption")
        handle = resumption.get("handle") if isinstance(resumption, dict) else None
        state: SessionState | None = None
        if handle:
            state = self.handles.lookup(str(handle), now)
            if state is None:
                raise SetupRejected(protocol.CLOSE_POLICY, protocol.REASON_BAD_HANDLE)
            if state.model != model_name:
                raise SetupRejected(
                    protocol.CLOSE_INVALID_ARGUMENT, "The model cannot change when resuming."
                )
            record.resumed = True
        check_refusals(
            config=self.config,
            open_connections=self.open_connections,
            resumed_session=state.session_id if state is not None else None,
            rng=rng,
        )
        if token is not None:
            try:
                self.tokens.admit(token.name, now, resuming=state is not None)
            except TokenRejected as exc:
                raise SetupRejected(protocol.CLOSE_POLICY, str(exc)) from exc
        if state is None:
            state = SessionState(session_id=new_session_id(), model=model_name, started_at=now)
        record.session_id = state.session_id
        return setup, state

    def _credentials(self, request: Request, record: SessionRecord) -> AuthToken | None:
        """Check the API key or find the ephemeral token (header, query or key field)."""
        query = parse_qs(request.path.partition("?")[2])
        key = request.headers.get("x-goog-api-key") or query.get("key", [None])[0]
        authorization = request.headers.get("authorization", "")
        token_name = None
        if authorization.lower().startswith("token "):
            token_name = authorization[6:].strip()
        token_name = token_name or query.get("access_token", [None])[0]
        if not token_name and key and key.startswith("auth_tokens/"):
            token_name = key
        record.api_key = key
        if token_name:
            record.token = token_name
            token = self.tokens.get(token_name)
            if token is None:
                raise SetupRejected(protocol.CLOSE_POLICY, "Ephemeral token is not valid.")
            return token
        if key and key in self.config.expired_api_keys:
            raise SetupRejected(protocol.CLOSE_INVALID_ARGUMENT, protocol.REASON_KEY_EXPIRED)
        if not key or (self.config.api_keys and key not in self.config.api_keys):
            raise SetupRejected(protocol.CLOSE_POLICY, protocol.REASON_BAD_KEY)
        return None
