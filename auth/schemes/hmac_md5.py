"""HMAC-MD5 "contexts": the {CRAM-MD5} (alias {HMAC-MD5}) stored form and CRAM-MD5 from it.

Dovecot stores for CRAM-MD5 not the password but the two MD5 chaining states reached after
hashing the HMAC inner and outer pads (key XOR 0x36 / 0x5c): 32 bytes, outer state first, each
state as four little-endian 32-bit words. hashlib cannot start from a given state, so the MD5
compression function is implemented here; it only ever runs on a handful of blocks.
"""

from __future__ import annotations

import hashlib
import math
import struct

_S = (
    [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
)
_K = [int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)]
_INIT = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_MASK = 0xFFFFFFFF
CONTEXT_LEN = 32


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    m = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        if i < 16:
            f = (b & c) | (~b & d)
            g = i
        elif i < 32:
            f = (d & b) | (~d & c)
            g = (5 * i + 1) % 16
        elif i < 48:
            f = b ^ c ^ d
            g = (3 * i + 5) % 16
        else:
            f = c ^ (b | ~d)
            g = (7 * i) % 16
        f = (f + a + _K[i] + m[g]) & _MASK
        a, d, c = d, c, b
        b = (b + _rotl(f, _S[i])) & _MASK
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def _finish(state: tuple[int, int, int, int], data: bytes, prefix_len: int) -> bytes:
    """MD5 digest of ``data`` continued from ``state`` after ``prefix_len`` (multiple of 64)."""
    total = prefix_len + len(data)
    length = struct.pack("<Q", (total * 8) & (2**64 - 1))
    data = data + b"\x80" + b"\0" * ((55 - total) % 64) + length
    for off in range(0, len(data), 64):
        state = _compress(state, data[off : off + 64])
    return struct.pack("<4I", *state)


def _pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > 64:
        key = hashlib.md5(key, usedforsecurity=False).digest()
    key = key.ljust(64, b"\0")
    return bytes(k ^ 0x36 for k in key), bytes(k ^ 0x5C for k in key)


def cram_context(password: bytes) -> bytes:
    """The 32-byte {CRAM-MD5} context of ``password`` (outer state, then inner state)."""
    ipad, opad = _pads(password)
    outer = _compress(_INIT, opad)
    inner = _compress(_INIT, ipad)
    return struct.pack("<8I", *outer, *inner)


def hmac_from_context(context: bytes, message: bytes) -> bytes:
    """HMAC-MD5(key, message) computed from the key's 32-byte context."""
    if len(context) != CONTEXT_LEN:
        raise ValueError("CRAM-MD5 context must be 32 bytes")
    words = struct.unpack("<8I", context)
    outer = (words[0], words[1], words[2], words[3])
    inner = (words[4], words[5], words[6], words[7])
    return _finish(outer, _finish(inner, message, 64), 64)
