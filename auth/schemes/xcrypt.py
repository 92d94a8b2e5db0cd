"""crypt(3) through libxcrypt's reentrant ``crypt_rn``, for the {CRYPT} family of schemes.

The stdlib ``crypt`` module holds the GIL and is gone in Python 3.13; libxcrypt (Debian's
libcrypt.so.1) handles every ``$id$`` Dovecot's {CRYPT} schemes produce (DES, $1$, $5$, $6$,
$2?$, yescrypt). ctypes releases the GIL around the foreign call, so a thread pool really runs
these hashes in parallel. Calls block for as long as the hash takes: run them off the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import secrets
import threading

# sizeof(struct crypt_data) in libxcrypt.
_CRYPT_DATA_SIZE = 32768
SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _load() -> ctypes.CDLL:
    for name in ("libcrypt.so.1", ctypes.util.find_library("crypt") or "libcrypt.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError("libcrypt (libxcrypt) is not installed")


_lib = _load()
_crypt_rn = _lib.crypt_rn
_crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
_crypt_rn.restype = ctypes.c_char_p
_local = threading.local()


def _buffer() -> ctypes.Array[ctypes.c_char]:
    buf: ctypes.Array[ctypes.c_char] | None = getattr(_local, "buf", None)
    if buf is None:
        buf = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
        _local.buf = buf
    return buf


def crypt(password: bytes, setting: bytes) -> bytes | None:
    """``crypt(password, setting)``; None when libxcrypt rejects the setting (or NUL in input)."""
    if b"\0" in password or b"\0" in setting:
        return None
    buf = _buffer()
    result = _crypt_rn(password, setting, buf, _CRYPT_DATA_SIZE)
    if result is None or result.startswith(b"*"):
        return None
    return bytes(result)


def random_salt(length: int) -> str:
    """Salt characters from crypt's ``./0-9A-Za-z`` alphabet."""
    return "".join(secrets.choice(SALT_ALPHABET) for _ in range(length))
