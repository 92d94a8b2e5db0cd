"""SEARCH BODY and TEXT over one message without an FTS index, as Dovecot searches it.

BODY looks in the decoded content of every ``text/*`` and ``message/*`` leaf (transfer
encoding undone, charset converted; other parts, preambles and epilogues are skipped);
TEXT also in every header block of the message, MIME part headers and the headers of
attached messages included (``searchkeys.header_block_text``). Matching compares
``searchkeys.casemap`` keys (titlecase, then canonical decomposition), as Dovecot does:
``cafe`` finds ``café``, ``strasse`` does not find ``Straße``.

The cost is the scan, so it avoids Python work per line and decoding where it cannot change
the answer. For a needle that is ASCII after case mapping, a part in an ASCII-compatible
charset is searched with ``bytes.lower().find`` in 1 MB windows. A miss in 8-bit text is
final unless the text around an occurrence of the needle's core is decoded and mapped:
non-ASCII characters only map to ASCII as a letter followed by a combining mark (so only
at the needle's last position) or as I, S, K, ';' or '`' (``_PURE``); the longest run of
the needle without its last character and without those must then be there in ASCII.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence

from cote.storage.message.binary import BinaryParseError, decode_base64, part_encoding
from cote.storage.message.headers import Buffer
from cote.storage.message.scanner import LEAF, Part
from cote.storage.message.searchkeys import casemap, header_block_text
from cote.storage.message.sections import lf_to_crlf

_WINDOW = 1 << 20
_SEARCHED = (b"text", b"message")
_PURE = frozenset(b"isk;`")
"""ASCII that non-ASCII characters map to with nothing else (dotless i, long s, Kelvin sign,
Greek question mark, Greek varia): they may stand anywhere in a match."""
_MAX_CANDIDATES = 4096
_UTF8 = frozenset(("utf-8", "utf8", "us-ascii", "ascii"))


def _ascii_compatible(charset: str) -> bool:
    """Charsets whose octets below 0x80 are always ASCII characters."""
    return (charset in _UTF8 or charset.startswith(("iso-8859-", "windows-", "cp125", "koi8"))
            or charset in ("latin1", "latin-1"))


class Needle:
    """One search string, prepared once per SEARCH."""

    __slots__ = ("ascii", "core", "folded", "raw_lines")

    def __init__(self, text: str) -> None:
        self.folded = casemap(text)
        self.ascii: bytes | None = \
            self.folded.lower().encode() if self.folded.isascii() else None
        self.core = b""
        """The longest part of an ASCII needle that any match has in ASCII (module doc)."""
        if self.ascii:
            runs = re.split(rb"[isk;`]", self.ascii[:-1])
            self.core = max(runs, key=len)
        self.raw_lines = "\r" in text or "\n" in text
        """A needle with a line break must see CRLF line ends, as Dovecot's stream has."""

    def in_text(self, text: str) -> bool:
        return self.folded in casemap(text)


def _charset(p: Part) -> str:
    for i in range(0, len(p.params) - 1, 2):
        if p.params[i].lower() == b"charset":
            return p.params[i + 1].decode("ascii", "replace").lower() or "us-ascii"
    return "us-ascii"


def _decode_text(raw: bytes, charset: str) -> str:
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # 8-bit text labelled us-ascii is nearly always UTF-8
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _bytes_match(data: Buffer, start: int, end: int, needle: Needle, charset: str) -> bool:
    """The needle in ``data[start:end]`` (decoded octets of a part)."""
    assert needle.ascii is not None
    key, core = needle.ascii, needle.core
    if not key:
        return True
    overlap = len(key) - 1
    eight_bit = False
    candidates: list[int] = []
    pos = start
    while pos < end:
        stop = min(end, pos + _WINDOW)
        window = bytes(data[pos:min(end, stop + overlap)]).lower()
        if window.find(key) >= 0:
            return True
        eight_bit = eight_bit or not window.isascii()
        if core and len(candidates) <= _MAX_CANDIDATES:
            at = window.find(core)
            while 0 <= at < stop - pos:
                candidates.append(pos + at)
                at = window.find(core, at + 1)
        pos = stop
    if not eight_bit:
        return False
    if not core or len(candidates) > _MAX_CANDIDATES:
        return needle.in_text(_decode_text(bytes(data[start:end]), charset))
    # a character is at most 4 octets: the margin holds any match around the core
    margin = 4 * len(key) + 4
    for at in candidates:
        a, b = max(start, at - margin), min(end, at + len(core) + margin)
        if needle.in_text(_decode_text(bytes(data[a:b]), charset)):
            return True
    return False


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_QP_SOFT = re.compile(rb"[ \t]*=[ \t]*\r?\n")
_QP_TRAILING = re.compile(rb"[ \t]+(?=\r?\n)")


def _lenient_qp(data: bytes) -> bytes:
    """Quoted-printable as Dovecot's decoder reads it for SEARCH: soft line breaks joined,
    blanks before a line end dropped, valid ``=XX`` decoded and any other ``=`` left as it
    is (BINARY's ``decode_qp`` refuses such data instead)."""
    data = _QP_TRAILING.sub(b"", _QP_SOFT.sub(b"", data))
    if b"=" not in data:
        return data
    return _QP_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), data)


def _encoding(buf: Buffer, p: Part) -> bytes:
    if b"content-transfer-encoding" not in bytes(buf[p.hdr_start:p.body_start]).lower():
        return b"7bit"  # no such field: no header parse
    return part_encoding(buf, p)


def _part_matches(buf: Buffer, p: Part, needle: Needle) -> bool:
    enc = _encoding(buf, p)
    if enc == b"":
        return False  # an encoding Dovecot cannot undo (x-uuencode...): not searched
    charset = _charset(p)
    fast = needle.ascii is not None and _ascii_compatible(charset)
    if enc not in (b"base64", b"quoted-printable") and fast and not needle.raw_lines:
        return _bytes_match(buf, p.body_start, p.body_end, needle, charset)
    raw = bytes(buf[p.body_start:p.body_end])
    if needle.raw_lines:
        raw = lf_to_crlf(raw)
    if enc == b"base64":
        try:
            raw = decode_base64(raw)
        except (BinaryParseError, binascii.Error):
            pass  # searched as it is
    elif enc == b"quoted-printable":
        raw = _lenient_qp(raw)
    if fast:
        return _bytes_match(raw, 0, len(raw), needle, charset)
    return needle.in_text(_decode_text(raw, charset))


def body_matches(buf: Buffer, parts: Sequence[Part], needle: Needle) -> bool:
    """SEARCH BODY: the needle in the decoded text of a text/* or message/* leaf (an empty
    needle matches every message)."""
    if not needle.folded:
        return True
    return any(p.kind == LEAF and p.ctype.lower() in _SEARCHED and _part_matches(buf, p, needle)
               for p in parts)


def headers_match(buf: Buffer, parts: Sequence[Part], needle: Needle) -> bool:
    """The header half of SEARCH TEXT: every header block of the message."""
    key = needle.ascii
    for p in parts:
        raw = bytes(buf[p.hdr_start:p.body_start])
        if (key is not None and raw.isascii() and b"=?" not in raw
                and not any(c in key for c in b" \t\r\n")):
            # nothing to decode, and a needle without white space cannot span a fold
            if raw.lower().find(key) >= 0:
                return True
            continue
        if needle.in_text(header_block_text(raw)):
            return True
    return False


def text_matches(buf: Buffer, parts: Sequence[Part], needle: Needle) -> bool:
    """SEARCH TEXT: headers, then bodies."""
    return headers_match(buf, parts, needle) or body_matches(buf, parts, needle)
