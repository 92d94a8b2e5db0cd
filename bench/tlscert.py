"""A self-signed RSA-2048 certificate for the TLS variants (made once, cached).

RSA 2048 is what Debian's snakeoil certificate and most mail servers use, so a TLS handshake
costs here what it costs in production; both servers get the same files. The certificate is
the demo's (``cote.demo.make_certificate``), written aside and renamed into place so that
parallel bench runs never read a half-written pair.
"""

from __future__ import annotations

import os
from pathlib import Path

from cote.demo import make_certificate

CERT_DIR = Path("/tmp/cote-bench/tls")


def self_signed(directory: Path = CERT_DIR) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for localhost, readable by the servers that load them as root."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    tmp_cert = cert_path.with_suffix(f".{os.getpid()}")
    tmp_key = key_path.with_suffix(f".{os.getpid()}")
    make_certificate(tmp_cert, tmp_key, hostname="localhost")
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)
    return cert_path, key_path
