"""Where the console's credential comes from (voice_client.credentials), without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voice_client.credentials import API_KEY_ENV, TOKEN_ENV, CredentialError, resolve


def resolved(environ: dict[str, str] | None = None, **options: Any) -> tuple[str, str, str]:
    given: dict[str, Any] = {"token": None, "token_file": None, "api_key": None}
    given |= {"api_key_file": None, **options}
    credential = resolve(environ=environ or {}, **given)
    return credential.kind, credential.value, credential.source


def test_the_environment_gives_either_kind():
    assert resolved({TOKEN_ENV: "ct_env"}) == ("token", "ct_env", TOKEN_ENV)
    assert resolved({API_KEY_ENV: " vp_env\n"}) == ("api_key", "vp_env", API_KEY_ENV)
    # Set but empty counts as unset.
    assert resolved({TOKEN_ENV: "", API_KEY_ENV: "vp_env"})[0] == "api_key"


def test_a_file_is_read_without_its_trailing_newline(tmp_path: Path):
    (tmp_path / "token").write_text("ct_file\n")
    (tmp_path / "key").write_text("vp_file\r\n")
    assert resolved(token_file=tmp_path / "token") == ("token", "ct_file", "--token-file")
    assert resolved(api_key_file=tmp_path / "key") == ("api_key", "vp_file", "--api-key-file")


def test_an_option_wins_over_the_environment(tmp_path: Path):
    both = {TOKEN_ENV: "ct_env", API_KEY_ENV: "vp_env"}
    assert resolved(both, token="ct_flag") == ("token", "ct_flag", "--token")
    assert resolved(both, api_key="vp_flag") == ("api_key", "vp_flag", "--api-key")
    (tmp_path / "key").write_text("vp_file")
    assert resolved({TOKEN_ENV: "ct_env"}, api_key_file=tmp_path / "key")[1] == "vp_file"


@pytest.mark.parametrize(
    ("environ", "options", "says"),
    [({}, {}, "no credential"),
     ({TOKEN_ENV: "ct_secret", API_KEY_ENV: "vp_secret"}, {}, "both"),
     ({}, {"token": "ct_secret", "api_key": "vp_secret"}, "not --token and --api-key"),
     ({}, {"token": "ct_secret", "token_file": Path("t")}, "not --token and --token-file"),
     ({}, {"token": "  "}, "--token is empty"),
     ({}, {"token_file": Path("/nonexistent/token")}, "cannot read --token-file"),
     ({}, {"api_key_file": "EMPTY"}, "is empty")],
)  # fmt: skip
def test_no_credential_or_two_is_an_error_that_never_shows_a_secret(
    tmp_path: Path, environ, options, says
):
    if options.get("api_key_file") == "EMPTY":
        options["api_key_file"] = tmp_path / "empty"
        options["api_key_file"].write_text("\n")
    with pytest.raises(CredentialError, match=says) as failed:
        resolved(environ, **options)
    assert "secret" not in str(failed.value)


def test_the_secret_is_not_in_the_repr():
    credential = resolve(
        token="ct_secret", token_file=None, api_key=None, api_key_file=None, environ={}
    )
    assert "ct_secret" not in repr(credential)
