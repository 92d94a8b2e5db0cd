"""The login processes' TLS server context, from Dovecot's ssl_* settings.

Certificates and keys arrive as PEM text (the config's ``<file`` values are already read), so
they are written to a private temp file only for the moment ``ssl`` needs a path.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from cote.config import Config

PROTOCOL_VERSIONS = {
    "SSLv3": ssl.TLSVersion.SSLv3, "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3, "ANY": ssl.TLSVersion.MINIMUM_SUPPORTED,
}


class TlsConfigError(ValueError):
    """A TLS setting cote cannot use; the message names the setting."""


def _load_pem_pair(ctx: ssl.SSLContext, cert: str, key: str, password: str | None) -> None:
    fd, path = tempfile.mkstemp(prefix="cote-tls-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(cert.rstrip("\n") + "\n" + key.rstrip("\n") + "\n")
        ctx.load_cert_chain(path, password=password or None)
    finally:
        os.unlink(path)


def server_context(cfg: Config) -> ssl.SSLContext | None:
    """None when ``ssl = no`` (or no certificate is configured)."""
    if cfg.get("ssl") == "no":
        return None
    cert, key = str(cfg.get("ssl_cert")), str(cfg.get("ssl_key"))
    if not cert or not key:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        _load_pem_pair(ctx, cert, key, str(cfg.get("ssl_key_password")))
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(f"ssl_cert/ssl_key: {e}") from e
    minimum = str(cfg.get("ssl_min_protocol"))
    if minimum not in PROTOCOL_VERSIONS:
        raise TlsConfigError(f"ssl_min_protocol: unknown protocol {minimum}")
    ctx.minimum_version = PROTOCOL_VERSIONS[minimum]
    ciphers = str(cfg.get("ssl_cipher_list"))
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as e:
            raise TlsConfigError(f"ssl_cipher_list: {e}") from e
    if cfg.get("ssl_prefer_server_ciphers"):
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    options = str(cfg.get("ssl_options")).split()
    if "no_compression" in options:
        ctx.options |= ssl.OP_NO_COMPRESSION
    if "no_ticket" in options:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx
