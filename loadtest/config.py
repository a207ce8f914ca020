"""The settings of one run, and the loopback rule for its target.

Kept free of Locust and gevent: the management command (Django's process) validates
everything here; the generator process gets the result as JSON.

The loopback rule never resolves a name: a name checked here would be resolved again by
every connection of the generator (REST, WebSocket, /metrics), and a DNS answer may change
in between (127.0.0.1 at the check, a remote address later). Without --allow-remote only a
literal loopback address is accepted, or `localhost`, which is mapped to 127.0.0.1 here,
and the generator connects to that address.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TARGET = "http://127.0.0.1:8000"
DEFAULT_TOOL_TURN_TEXT = 'call get_current_time {"timezone": "UTC"}'


@dataclass(frozen=True)
class LoadConfig:
    target: str  # base URL, http(s)://host[:port], no trailing slash
    api_key: str
    agent_id: int
    callers: int
    spawn_rate: float
    duration: float  # seconds from the first spawn until callers hang up
    turns: int  # turns per call; 0 = one call per caller for the whole run
    utterance: bytes  # PCM16 16 kHz mono spoken in each spoken turn
    frame_ms: int
    pause: float  # mean seconds between a reply's end and the next turn
    barge_in_every: int  # every Nth turn starts while the reply still plays; 0 = never
    tool_every: int  # every Nth turn is the tool turn text; 0 = never
    tool_turn_text: str
    barge_in_after: float  # seconds of reply audio before a barge-in starts
    reply_timeout: float
    echo: bool
    metrics_token: str | None
    server_pids: tuple[int, ...]
    max_error_rate: float
    quiet: bool
    seed: int
    warm_up: bool = True  # one call before the baseline of the server's memory

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["utterance"] = base64.b64encode(self.utterance).decode()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadConfig:
        data = {**data, "utterance": base64.b64decode(data["utterance"])}
        data["server_pids"] = tuple(data["server_pids"])
        return cls(**data)

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.target)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}/ws/v1/live"


def normalise_target(url: str) -> str:
    """`url` as `scheme://host[:port]`; ValueError for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"target {url!r}: give an http:// or https:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"target {url!r}: give the server's base URL only (no path)")
    try:
        parts.port  # noqa: B018  (parsing the port validates it)
    except ValueError as exc:
        raise ValueError(f"target {url!r}: {exc}") from exc
    return f"{parts.scheme}://{parts.netloc}"


LOCALHOST = "localhost"


def is_loopback(url: str) -> bool:
    """Whether the target's host is a literal loopback address (127.0.0.0/8, ::1) or
    `localhost`. Nothing is resolved: any other name is not provably local."""
    host = urlsplit(url).hostname or ""
    if host == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_target(url: str) -> str:
    """The normalised target ``url`` with `localhost` as 127.0.0.1 (the address the
    generator connects to); ValueError, saying why, for a target not provably local."""
    parts = urlsplit(url)
    if not is_loopback(url):
        raise ValueError(
            f"refusing {url}: it is not a loopback address. Without --allow-remote the "
            "target must be a literal loopback address (127.0.0.1 or another 127.x.y.z, "
            "[::1]) or localhost; a name is not resolved, since it could lead elsewhere "
            "when the callers connect. A load test is an attack on a server that did not "
            "ask for it; give --allow-remote to load a deployment of your own."
        )
    if parts.hostname != LOCALHOST:
        return url
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://127.0.0.1{port}"
