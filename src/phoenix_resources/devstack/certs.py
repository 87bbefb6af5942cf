"""Throwaway TLS material made with ``openssl``: a CA and one server certificate for
``localhost`` / ``127.0.0.1``, for the local stack's TLS listeners and the tests that use
them. Nothing here is fit for production: keys are unencrypted and live two days."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from phoenix_resources.errors import StackError

OPENSSL_HINT = "Install OpenSSL: apt-get install -y openssl"


@dataclass(frozen=True)
class Certificates:
    ca: Path
    """The CA certificate (PEM) clients verify the server with."""
    cert: Path
    """The server's certificate (PEM), SAN ``DNS:localhost, IP:127.0.0.1``."""
    key: Path
    """The server's private key (PEM, PKCS#8, unencrypted)."""


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise StackError(f"openssl was not found. {OPENSSL_HINT}")
    result = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{result.stderr}")


def make_certificates(folder: Path, name: str = "ca") -> Certificates:
    """A fresh CA (``<name>.crt``) and a server certificate signed by it, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-subj", f"/CN=phoenix-resources test {name}", cwd=folder)
    (folder / "san.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", f"{name}.crt", "-CAkey", f"{name}.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
             cwd=folder)
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.pk8",
             cwd=folder)
    return Certificates(folder / f"{name}.crt", folder / "server.crt", folder / "server.pk8")
