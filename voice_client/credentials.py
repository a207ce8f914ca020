"""Where the console's credential comes from: a file or the environment, before a flag.

A secret on the command line is readable by every local user (``ps``, /proc/<pid>/cmdline)
and lands in shell history, so the documented forms are ``VOICE_AGENT_TOKEN`` /
``VOICE_AGENT_API_KEY`` and ``--token-file`` / ``--api-key-file``; ``--token`` and
``--api-key`` still work, for a quick try with a throwaway token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TOKEN_ENV = "VOICE_AGENT_TOKEN"  # noqa: S105 (the variable's name, not a secret)
API_KEY_ENV = "VOICE_AGENT_API_KEY"

Kind = Literal["token", "api_key"]


class CredentialError(ValueError):
    """No usable credential, or more than one; ``str()`` says which (never the secret)."""


@dataclass(frozen=True)
class Credential:
    kind: Kind  # a client token (ct_...) or a tenant API key (vp_...)
    value: str = field(repr=False)  # a secret: kept out of reprs and tracebacks' locals
    source: str  # where it came from, for messages: "--token-file", "VOICE_AGENT_TOKEN", ...


def _read(path: Path, option: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The exception's text names the file and the OS error, never its contents.
        raise CredentialError(f"cannot read {option} {path}: {exc}") from None
    value = text.strip()  # the newline an editor or `echo` leaves is not part of it
    if not value:
        raise CredentialError(f"{option} {path} is empty")
    return value


def resolve(
    *,
    token: str | None,
    token_file: Path | None,
    api_key: str | None,
    api_key_file: Path | None,
    environ: Mapping[str, str],
) -> Credential:
    """The one credential the options (or, without any, the environment) give.

    An option wins over the environment, so a shell that exports one kind can still use
    the other for one run; two options, or both variables and no option, are ambiguous.
    """
    given = {
        "--token": token is not None,
        "--token-file": token_file is not None,
        "--api-key": api_key is not None,
        "--api-key-file": api_key_file is not None,
    }
    named = [option for option, present in given.items() if present]
    if len(named) > 1:
        raise CredentialError(f"give one credential, not {' and '.join(named)}")
    if token_file is not None:
        return Credential("token", _read(token_file, "--token-file"), "--token-file")
    if api_key_file is not None:
        return Credential("api_key", _read(api_key_file, "--api-key-file"), "--api-key-file")
    if token is not None or api_key is not None:
        kind: Kind = "token" if token is not None else "api_key"
        value = (token if token is not None else api_key) or ""
        if not value.strip():
            raise CredentialError(f"--{kind.replace('_', '-')} is empty")
        return Credential(kind, value.strip(), f"--{kind.replace('_', '-')}")
    from_env = {
        name: environ[name].strip()
        for name in (TOKEN_ENV, API_KEY_ENV)
        if environ.get(name, "").strip()  # set but empty counts as unset, as in most tools
    }
    if len(from_env) > 1:
        raise CredentialError(
            f"both {TOKEN_ENV} and {API_KEY_ENV} are set: unset one, or give an option"
        )
    if TOKEN_ENV in from_env:
        return Credential("token", from_env[TOKEN_ENV], TOKEN_ENV)
    if API_KEY_ENV in from_env:
        return Credential("api_key", from_env[API_KEY_ENV], API_KEY_ENV)
    raise CredentialError(
        f"no credential: set {TOKEN_ENV} (a client token) or {API_KEY_ENV} (with --agent), "
        "or give --token-file / --api-key-file"
    )
