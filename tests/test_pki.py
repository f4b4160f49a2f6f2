"""The lab's throw-away CA: real TLS handshakes on loopback, and the checks they imply."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from t3probe.lab.pki import Pki, make_pki

# The `pki` fixture (tests/conftest.py) is issued for this name, 127.0.0.1 and ::1.
NAME = "t3.lab.test"


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(await reader.readline())
        await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # the client's failed handshake is what the test looks at
    finally:
        writer.close()


async def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, server_hostname: str
) -> bytes:
    """Connect over TLS to a loopback echo; return what came back."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=server_context)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname=server_hostname
        )
        try:
            writer.write(b"ping\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


def _openssl_text(cert: Path) -> str:
    result = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def _expires_within(cert: Path, seconds: int) -> bool:
    result = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-checkend", str(seconds)],
        capture_output=True,
        check=False,
    )
    return result.returncode != 0


@pytest.mark.parametrize("server_hostname", [NAME, "127.0.0.1"])
async def test_handshake_with_the_ca_trusting_client(pki: Pki, server_hostname: str) -> None:
    echoed = await _handshake(pki.server_context(), pki.client_context(), server_hostname)
    assert echoed == b"ping\n"


async def test_leaf_for_another_name_fails_verification(pki: Pki) -> None:
    other = pki.issue("other", ["other.lab.test"], ["127.0.0.9"])
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await _handshake(other.server_context(), pki.client_context(), NAME)
    # The same leaf is fine for the name it was issued for.
    assert await _handshake(other.server_context(), pki.client_context(), "other.lab.test")


async def test_another_ca_is_not_trusted(pki: Pki, tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "stranger", [NAME], ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        await _handshake(stranger.server_context(), pki.client_context(), NAME)


def test_client_context_verifies(pki: Pki) -> None:
    context = pki.client_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_certificates_have_the_promised_extensions(pki: Pki) -> None:
    ca = _openssl_text(pki.ca_cert)
    assert "CA:TRUE" in ca
    assert "Certificate Sign" in ca
    assert "NIST CURVE: P-256" in ca
    leaf = _openssl_text(pki.cert)
    assert "CA:FALSE" in leaf
    assert "TLS Web Server Authentication" in leaf
    assert "DNS:t3.lab.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" in leaf
    assert "NIST CURVE: P-256" in leaf


def test_validity_is_short(pki: Pki) -> None:
    for cert in (pki.ca_cert, pki.cert):
        assert not _expires_within(cert, 86400)
        assert _expires_within(cert, 7 * 86400)


def test_keys_are_private(pki: Pki) -> None:
    for key in (pki.ca_key, pki.key):
        assert key.stat().st_mode & 0o077 == 0


def test_make_pki_is_fast(tmp_path: Path, time_unit: float) -> None:
    started = time.monotonic()
    fresh = make_pki(tmp_path, [NAME], ["127.0.0.1"])
    fresh.issue("second", ["second.lab.test"], [])
    assert time.monotonic() - started < 1.0 * time_unit


@pytest.mark.parametrize(
    ("dns_names", "ip_addresses"),
    [
        ([], []),
        (["bad name"], []),
        (["a,DNS:evil.test"], []),
        (["a/CN=evil"], []),
        (["x" * 64 + ".test"], []),
        ([], ["not-an-ip"]),
        ([], ["127.0.0.1,DNS:evil.test"]),
    ],
)
def test_names_that_could_inject_into_the_config_are_rejected(
    tmp_path: Path, dns_names: list[str], ip_addresses: list[str]
) -> None:
    with pytest.raises(ValueError, match=r"."):
        make_pki(tmp_path, dns_names, ip_addresses)
    assert not (tmp_path / "ca.pem").exists()


@pytest.mark.parametrize("name", ["ca", "../escape", "with space", ""])
def test_leaf_file_names_are_plain(pki: Pki, name: str) -> None:
    with pytest.raises(ValueError, match="file stem"):
        pki.issue(name, ["x.lab.test"], [])
