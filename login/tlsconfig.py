"""The login processes' TLS server contexts, from Dovecot's ssl_* settings.

Certificates and keys arrive as PEM text (the config's ``<file`` values are already read), so
they are written to a private temp file only for the moment ``ssl`` needs a path. Everything is
built by the master's ``prepare`` hook (as root, before the chroot, again on every reload):
the default context plus one per ``local_name`` block, chosen by the client's SNI name.

Client certificates (``ssl_verify_client_cert``) are requested but, as in Dovecot, an invalid
one does not fail the handshake: it only means the login process does not tell auth
``valid-client-cert``. Python's ``ssl`` cannot do that by itself (a failed verification always
aborts the handshake), so OpenSSL's verify callback and result are reached through ctypes.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from cote.config import Config

PROTOCOL_VERSIONS = {
    "SSLv3": ssl.TLSVersion.SSLv3, "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3, "ANY": ssl.TLSVersion.MINIMUM_SUPPORTED,
}
SSL_VERIFY_PEER = 0x01
SSL_VERIFY_CLIENT_ONCE = 0x04
SSL_CTRL_SET_GROUPS_LIST = 92
X509_V_OK = 0
_PYOBJECT_HEAD = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)


class TlsConfigError(ValueError):
    """A TLS setting cote cannot use; the message names the setting."""


# -- OpenSSL through ctypes: the few calls Python's ssl module does not offer -----------------
_lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]  # resolves its libssl
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
_lib.SSL_CTX_set_verify.restype = None
_lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
_lib.SSL_CTX_ctrl.restype = ctypes.c_long
_lib.SSL_get_verify_result.argtypes = [ctypes.c_void_p]
_lib.SSL_get_verify_result.restype = ctypes.c_long
_lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
_lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
_lib.OBJ_txt2nid.argtypes = [ctypes.c_char_p]
_lib.OBJ_txt2nid.restype = ctypes.c_int
_lib.OBJ_nid2ln.argtypes = [ctypes.c_int]
_lib.OBJ_nid2ln.restype = ctypes.c_char_p
_lib.X509_verify_cert_error_string.argtypes = [ctypes.c_long]
_lib.X509_verify_cert_error_string.restype = ctypes.c_char_p


def _accept(preverify_ok: int, store: int | None) -> int:
    """Go on with the handshake whatever the verification found (kept in the verify result)."""
    return 1


_accept_any = _VerifyCallback(_accept)


def _ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of a CPython SSLContext: the first field after the object header."""
    pointer = ctypes.c_void_p.from_address(id(ctx) + _PYOBJECT_HEAD).value
    assert pointer
    return pointer


def _ssl_pointer(obj: ssl.SSLObject, ctx: ssl.SSLContext) -> int | None:
    """The ``SSL *`` of an SSLObject (CPython's _SSLSocket: header, socket weakref, SSL *),
    checked against its context so a layout change reads as "no valid certificate"."""
    inner = getattr(obj, "_sslobj", None)
    if inner is None:
        return None
    pointer = ctypes.c_void_p.from_address(id(inner) + _PYOBJECT_HEAD + ctypes.sizeof(
        ctypes.c_void_p)).value
    if not pointer or _lib.SSL_get_SSL_CTX(pointer) != _ctx_pointer(ctx):
        return None
    return int(pointer)


def long_field_name(name: str) -> str:
    """``ssl_cert_username_field`` as OpenSSL's long name (``CN`` → ``commonName``)."""
    nid = _lib.OBJ_txt2nid(name.encode())
    if nid <= 0:
        return name
    long_name = _lib.OBJ_nid2ln(nid)
    return long_name.decode() if long_name else name


@dataclass(frozen=True, slots=True)
class ClientCert:
    """What the login process knows of the client's certificate after the handshake."""

    presented: bool
    valid: bool
    username: str | None  # the ssl_cert_username_field value of a valid certificate
    error: str = ""  # why it is not valid (OpenSSL's text)


def client_certificate(obj: ssl.SSLObject, field: str) -> ClientCert:
    if not obj.getpeercert(binary_form=True):
        return ClientCert(False, False, None)
    pointer = _ssl_pointer(obj, obj.context)
    if pointer is None:
        return ClientCert(True, False, None, "unknown")
    result = _lib.SSL_get_verify_result(pointer)
    if result != X509_V_OK:
        text = _lib.X509_verify_cert_error_string(result)
        return ClientCert(True, False, None, text.decode() if text else str(result))
    username: str | None = None
    subject = (obj.getpeercert() or {}).get("subject", ())
    for rdn in subject:
        for pair in rdn:
            if isinstance(pair, tuple) and pair[0] == field and username is None:
                username = str(pair[1])
    return ClientCert(True, True, username)


# -- building contexts --------------------------------------------------------------------------
def _with_temp_file(text: str, use: Callable[[str], None]) -> None:
    fd, path = tempfile.mkstemp(prefix="cote-tls-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        use(path)
    finally:
        os.unlink(path)


def _load_pem_pair(ctx: ssl.SSLContext, cert: str, key: str, password: str | None) -> None:
    _with_temp_file(cert.rstrip("\n") + "\n" + key.rstrip("\n") + "\n",
                    lambda path: ctx.load_cert_chain(path, password=password or None))


def _context(cfg: Config) -> ssl.SSLContext:
    cert, key = str(cfg.get("ssl_cert")), str(cfg.get("ssl_key"))
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
    curves = str(cfg.get("ssl_curve_list"))
    if curves and _lib.SSL_CTX_ctrl(_ctx_pointer(ctx), SSL_CTRL_SET_GROUPS_LIST, 0,
                                    ctypes.c_char_p(curves.encode())) != 1:
        raise TlsConfigError(f"ssl_curve_list: invalid curve list: {curves}")
    dh = str(cfg.get("ssl_dh"))
    if dh:
        try:
            _with_temp_file(dh, ctx.load_dh_params)
        except (ssl.SSLError, OSError) as e:
            raise TlsConfigError(f"ssl_dh: {e}") from e
    if cfg.get("ssl_prefer_server_ciphers"):
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:  # Python's server contexts prefer their own order unless told otherwise
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    options = str(cfg.get("ssl_options")).split()
    if "no_compression" in options:
        ctx.options |= ssl.OP_NO_COMPRESSION
    if "no_ticket" in options:
        ctx.options |= ssl.OP_NO_TICKET
    if cfg.get("ssl_verify_client_cert"):
        ca = str(cfg.get("ssl_ca"))
        if not ca:
            raise TlsConfigError("ssl_verify_client_cert set, but ssl_ca not")
        try:  # a file, not cadata: OpenSSL then also loads the CRLs that follow the CAs
            _with_temp_file(ca, lambda path: ctx.load_verify_locations(cafile=path))
        except (ssl.SSLError, OSError) as e:
            raise TlsConfigError(f"ssl_ca: {e}") from e
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if cfg.get("ssl_require_crl"):
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN
        _lib.SSL_CTX_set_verify(_ctx_pointer(ctx), SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
                                _accept_any)
    return ctx


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return pattern == name


def _example_name(pattern: str) -> str:
    """A name the pattern matches, to look the block's settings up with."""
    return "x" + pattern[1:] if pattern.startswith("*.") else pattern


@dataclass
class ServerTls:
    """The default context and the ``local_name`` ones; ``context`` switches on SNI."""

    context: ssl.SSLContext
    by_name: list[tuple[str, ssl.SSLContext]]
    verify_client: bool
    username_field: str

    def for_name(self, name: str) -> ssl.SSLContext | None:
        exact = [c for p, c in self.by_name if p == name]
        if exact:
            return exact[0]
        wild = sorted(((p, c) for p, c in self.by_name if _pattern_matches(p, name)),
                      key=lambda pc: -len(pc[0]))
        return wild[0][1] if wild else None

    def _sni(self, obj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        if name:
            setattr(obj, SNI_ATTRIBUTE, name)  # the connection reads it after the handshake
            chosen = self.for_name(name.lower())
            if chosen is not None:
                obj.context = chosen


SNI_ATTRIBUTE = "cote_sni_name"


def sni_name(obj: ssl.SSLObject | None) -> str | None:
    """The server name the client asked for (only recorded when local_name blocks exist)."""
    name = getattr(obj, SNI_ATTRIBUTE, None)
    return name if isinstance(name, str) else None


def _enabled(cfg: Config) -> bool:
    return cfg.get("ssl") != "no" and bool(cfg.get("ssl_cert")) and bool(cfg.get("ssl_key"))


def server_tls(cfg: Config, protocol: str | None = None) -> ServerTls | None:
    """None when ``ssl = no`` (or no certificate is configured)."""
    base = cfg.lookup(protocol=protocol) if protocol else cfg
    if not _enabled(base):
        return None
    tls = ServerTls(_context(base), [], bool(base.get("ssl_verify_client_cert")),
                    long_field_name(str(base.get("ssl_cert_username_field"))))
    for f in cfg.filters:
        if f.local_name is None or (f.protocol is not None and f.protocol != protocol):
            continue
        for pattern in f.local_name.split():
            pattern = pattern.lower()
            if any(p == pattern for p, _ in tls.by_name):
                continue
            named = cfg.lookup(protocol=protocol, local_name=_example_name(pattern))
            if _enabled(named):
                try:
                    tls.by_name.append((pattern, _context(named)))
                except TlsConfigError as e:
                    raise TlsConfigError(f"local_name {pattern}: {e}") from e
    if tls.by_name:
        tls.context.sni_callback = tls._sni
        for _, ctx in tls.by_name:  # the chosen context's callback is not asked again
            ctx.sni_callback = tls._sni
    return tls


def server_context(cfg: Config) -> ssl.SSLContext | None:
    """The default context alone (callers that do not need SNI or client certificates)."""
    tls = server_tls(cfg)
    return tls.context if tls is not None else None

