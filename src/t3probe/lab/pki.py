"""A throw-away certificate authority for the lab and the tests, made with ``openssl``.

Real TLS with a private CA lets the lab and the tests exercise certificate checks
exactly as production does (no verification switch exists to turn off). The
``openssl`` command-line tool is used instead of a Python crypto library so the probe
gains no runtime dependency for what is test and lab tooling; it ships with every
Debian. Only options OpenSSL 1.1.1 already knew are used.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Short enough that a leaked lab key is worthless soon, long enough for a long lab run.
VALIDITY_DAYS = 3
_OPENSSL_TIMEOUT = 30.0
# Names end up in an OpenSSL config file and a -subj argument; restricting them keeps
# either from being reinterpreted (no separators, no config syntax).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_FILE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# req needs a distinguished_name section even when -subj supplies the subject; an
# explicit config keeps the host's openssl.cnf (and its defaults) out of our certs.
_REQ_CONFIG = """\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXTENSIONS = """\
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = {san}
"""


class PkiError(RuntimeError):
    """openssl is missing or refused to make a certificate."""


@dataclass(frozen=True)
class LeafCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @property
    def leaf(self) -> LeafCert:
        return LeafCert(self.cert, self.key)

    def server_context(self) -> ssl.SSLContext:
        """A server context presenting the leaf made with the CA."""
        return self.leaf.server_context()

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this CA and nothing else."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def issue(self, name: str, dns_names: Sequence[str], ip_addresses: Sequence[str]) -> LeafCert:
        """Sign another leaf (files ``NAME.pem`` / ``NAME.key``) with this CA."""
        if not _FILE_STEM.match(name) or name == "ca":
            raise ValueError(f"leaf name {name!r} must be a plain file stem other than 'ca'")
        san = _subject_alt_name(dns_names, ip_addresses)
        cert = self.directory / f"{name}.pem"
        key = self.directory / f"{name}.key"
        csr = self.directory / f"{name}.csr"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(_LEAF_EXTENSIONS.format(san=san))
        common_name = (list(dns_names) + list(ip_addresses))[0]
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}",
            "-config", self.directory / "req.cnf",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(VALIDITY_DAYS),
            "-sha256", "-extfile", extensions, "-extensions", "leaf", "-out", cert,
        )  # fmt: skip
        key.chmod(0o600)
        csr.unlink()
        return LeafCert(cert, key)


def make_pki(directory: Path, dns_names: Sequence[str], ip_addresses: Sequence[str]) -> Pki:
    """Create a CA in ``directory`` and one leaf (``server``) for the given names."""
    if shutil.which("openssl") is None:
        raise PkiError("the openssl command is needed for the lab's throw-away CA")
    _subject_alt_name(dns_names, ip_addresses)  # validate before touching the disk
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "req.cnf"
    config.write_text(_REQ_CONFIG)
    ca_cert = directory / "ca.pem"
    ca_key = directory / "ca.key"
    _openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", ca_key, "-out", ca_cert,
        "-subj", f"/CN=t3probe throw-away CA {secrets.token_hex(4)}",
        "-days", str(VALIDITY_DAYS), "-sha256", "-config", config, "-extensions", "ca",
    )  # fmt: skip
    ca_key.chmod(0o600)
    pki = Pki(directory, ca_cert, ca_key, directory / "server.pem", directory / "server.key")
    pki.issue("server", dns_names, ip_addresses)
    return pki


def _subject_alt_name(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> str:
    if not dns_names and not ip_addresses:
        raise ValueError("a certificate needs at least one DNS name or IP address")
    entries: list[str] = []
    for name in dns_names:
        if not _DNS_NAME.match(name) or len(name) > 253:
            raise ValueError(f"{name!r} is not a DNS name")
        entries.append(f"DNS:{name}")
    for address in ip_addresses:
        entries.append(f"IP:{ipaddress.ip_address(address)}")
    return ",".join(entries)


def _openssl(*args: str | Path) -> None:
    # A user's OPENSSL_CONF could add extensions or policies to what x509 signs; the
    # lab's certificates must come out the same on every machine.
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    command = ["openssl", *(str(arg) for arg in args)]
    try:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            timeout=_OPENSSL_TIMEOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as err:
        stderr = err.stderr.decode(errors="replace").strip()[-500:]
        raise PkiError(f"openssl {args[0]} failed: {stderr}") from err
    except subprocess.TimeoutExpired as err:
        raise PkiError(f"openssl {args[0]} took longer than {_OPENSSL_TIMEOUT:g}s") from err
