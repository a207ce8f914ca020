"""A self-signed certificate for the names the emulator is reached by: the SDK forces wss.

127.0.0.1 and localhost are always covered; a deployment adds the names its clients dial
(docker-compose.yml: ``--cert-name emulator``). A certificate on disk that lacks one of the
requested names is made again, so changing the names never leaves a mismatched file behind.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
DEFAULT_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost")


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def cert_names(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The defaults and ``extra``, in canonical form, without repeats, in order."""
    names: dict[str, None] = {}
    for name in (*DEFAULT_NAMES, *extra):
        if name.strip():
            names[_canonical(name.strip())] = None
    return tuple(names)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def covered_names(cert_path: Path) -> set[str]:
    """The DNS names and IP addresses of the certificate's subjectAltName ({} if unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return set()
    dns = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    return dns | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def ensure_cert(cert_dir: Path, names: Iterable[str] = ()) -> tuple[Path, Path]:
    """Return (cert, key) in ``cert_dir``, covering 127.0.0.1, localhost and ``names``;
    made (again) when either file is missing or the certificate lacks a name."""
    wanted = cert_names(names)
    cert_path, key_path = cert_dir / CERT_NAME, cert_dir / KEY_NAME
    if key_path.exists() and set(wanted) <= covered_names(cert_path):
        return cert_path, key_path
    cert_dir.mkdir(parents=True, exist_ok=True)
    # EC P-256: generating it takes milliseconds, unlike RSA, and every TLS stack accepts it.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in wanted]), critical=False
        )
        # A CA flag lets the file serve directly as the trust anchor of the client.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Replaced whole (write, then rename): a process reading the files meanwhile sees the old
    # pair or the new one, never half a file.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_ssl_context(cert_path: Path) -> ssl.SSLContext:
    """A client context that trusts only the emulator's certificate."""
    return ssl.create_default_context(cafile=str(cert_path))
