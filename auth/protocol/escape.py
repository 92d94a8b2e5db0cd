"""Dovecot's tab-escaping of protocol values and TAB-separated line splitting/joining.

Values travel in TAB-separated lines, so the four bytes that would break a line are escaped
with 0x01: 0x01 → ``\\x01 1``, TAB → ``\\x01 t``, CR → ``\\x01 r``, LF → ``\\x01 n``; the
decoder also accepts ``\\x01 0`` for NUL and keeps any other escaped byte as itself.
Values are str (UTF-8, with surrogateescape so that arbitrary bytes survive a round trip).
"""

from __future__ import annotations

from collections.abc import Iterable

_ESCAPE = {0x01: b"\x011", 0x09: b"\x01t", 0x0D: b"\x01r", 0x0A: b"\x01n"}
_UNESCAPE = {ord("0"): b"\0", ord("1"): b"\x01", ord("t"): b"\t", ord("r"): b"\r",
             ord("n"): b"\n"}
_SPECIAL = b"\x01\t\r\n"


def escape_bytes(value: bytes) -> bytes:
    if not any(c in value for c in (b"\x01", b"\t", b"\r", b"\n")):
        return value
    return b"".join(_ESCAPE.get(c, bytes((c,))) for c in value)


def unescape_bytes(value: bytes) -> bytes:
    if b"\x01" not in value:
        return value
    out = bytearray()
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x01:
            if i + 1 < n:
                nxt = value[i + 1]
                out += _UNESCAPE.get(nxt, bytes((nxt,)))
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def encode(value: str) -> bytes:
    """A str value as escaped bytes."""
    return escape_bytes(value.encode("utf-8", "surrogateescape"))


def decode(value: bytes) -> str:
    """Escaped bytes as a str value."""
    return unescape_bytes(value).decode("utf-8", "surrogateescape")


def split_line(line: bytes) -> list[str]:
    """A line (without LF) as its unescaped TAB-separated fields."""
    return [decode(field) for field in line.split(b"\t")]


def join_line(fields: Iterable[str]) -> bytes:
    """Fields as one escaped line, with its LF."""
    return b"\t".join(encode(f) for f in fields) + b"\n"
