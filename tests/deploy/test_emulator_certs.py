"""The emulator's certificate covers the names it is reached by (docker-compose.yml dials
``emulator``), and a certificate lacking a requested name is made again."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from voice_platform.live_emulator import cli
from voice_platform.live_emulator.certs import ensure_cert

ROOT = Path(__file__).resolve().parents[2]


def san(cert_path: Path) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of the certificate, read back with cryptography."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return dns, ips


def test_default_names_are_loopback_and_localhost(tmp_path):
    cert_path, _ = ensure_cert(tmp_path)
    assert san(cert_path) == ({"localhost"}, {"127.0.0.1"})


def test_requested_names_are_covered_dns_and_ip(tmp_path):
    cert_path, key_path = ensure_cert(tmp_path, ["emulator", "10.0.0.7", "Emulator.Local"])
    assert san(cert_path) == (
        {"localhost", "emulator", "emulator.local"},
        {"127.0.0.1", "10.0.0.7"},
    )
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"


def test_existing_cert_is_kept_when_it_covers_the_names(tmp_path):
    cert_path, _ = ensure_cert(tmp_path, ["emulator"])
    before = cert_path.read_bytes()
    ensure_cert(tmp_path, ["emulator"])
    ensure_cert(tmp_path)  # a subset: still covered
    assert cert_path.read_bytes() == before


def test_existing_cert_lacking_a_name_is_regenerated(tmp_path):
    cert_path, key_path = ensure_cert(tmp_path)  # an older emulator's: loopback only
    old_cert, old_key = cert_path.read_bytes(), key_path.read_bytes()
    ensure_cert(tmp_path, ["emulator"])
    assert cert_path.read_bytes() != old_cert
    assert key_path.read_bytes() != old_key
    assert "emulator" in san(cert_path)[0]
    # The new pair matches: a server context loads it.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)


def test_unreadable_cert_is_regenerated(tmp_path):
    ensure_cert(tmp_path)
    (tmp_path / "cert.pem").write_text("not a certificate")
    cert_path, _ = ensure_cert(tmp_path, ["emulator"])
    assert "emulator" in san(cert_path)[0]


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], "", ()),
        (
            ["--cert-name", "emulator", "--cert-name", "voice.internal"],
            "",
            ("emulator", "voice.internal"),
        ),
        ([], "emulator, 10.1.2.3", ("emulator", "10.1.2.3")),
        (["--cert-name", "flag"], "env", ("flag",)),  # the flag wins over the variable
    ],
)
def test_cert_name_option_and_environment(monkeypatch, argv, env, expected):
    monkeypatch.setenv(cli.CERT_NAMES_ENV, env)
    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.config_from_args(parser.parse_args(argv)).cert_names == expected


def test_emulator_process_serves_a_cert_for_its_names(tmp_path):
    """`python -m voice_platform.live_emulator --cert-name emulator`, as compose runs it;
    a TLS client dialling the name "emulator" (pointed at the local port) verifies it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "voice_platform.live_emulator", "--port", "0",
         "--cert-dir", str(tmp_path), "--cert-name", "emulator"],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline()
        port = int(listening.rsplit(":", 1)[1])
        proc.stdout.readline()  # Certificate: ...
        assert proc.stdout.readline().strip() == "Certificate names: 127.0.0.1, emulator, localhost"
        ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="emulator") as tls,
        ):
            assert tls.version()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            ctx.wrap_socket(raw, server_hostname="web")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
