"""BINARY[section] and BINARY.SIZE[section] (RFC 3516) as Dovecot answers them.

Leaf parts in base64 or quoted-printable are decoded; 7bit/8bit/binary (and no header at
all) pass through; any other transfer encoding — an empty or unparsable one included — is
``UnknownCTE`` (``NO [UNKNOWN-CTE]``), and undecodable data is ``BinaryParseError``
(``NO [PARSE] Invalid data in MIME part``). In a section that covers decoded parts with
their headers (BINARY[], BINARY[TEXT], a multipart), each decoded part's
Content-Transfer-Encoding field is moved to the end of its header as
``Content-Transfer-Encoding: binary``, as Dovecot's binary stream does. BINARY.SIZE is
refused when any part of the message has an unknown encoding (Dovecot sizes all parts at
once).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cote.storage.message.bodystructure import children_of
from cote.storage.message.headers import Buffer, field_ranges, read_header
from cote.storage.message.rfc822 import MIME_TOKEN, Cursor
from cote.storage.message.scanner import LEAF, Part
from cote.storage.message.sections import (
    HEADER_FIELDS,
    HEADER_FIELDS_NOT,
    Section,
    header_fields,
    lf_to_crlf,
    section_range,
)

IDENTITY = frozenset((b"7bit", b"8bit", b"binary"))
DECODED = frozenset((b"base64", b"quoted-printable"))
_CTE_BINARY = b"Content-Transfer-Encoding: binary\r\n"
_QP_BAD_ESCAPE = re.compile(rb"=(?![0-9A-Fa-f]{2})")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


class UnknownCTE(ValueError):
    """NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding"""


class BinaryParseError(ValueError):
    """NO [PARSE] Invalid data in MIME part"""


class BinaryContent(NamedTuple):
    data: bytes
    literal8: bool  # send as ~{n}: decoded content or NUL octets


def part_encoding(buf: Buffer, p: Part) -> bytes:
    """The lower-case transfer encoding BINARY uses for a part, read as Dovecot's decoder
    reads it: the last Content-Transfer-Encoding field, one token and maybe a comment
    (BODYSTRUCTURE shows the first readable field, and ignores it in a non-MIME message;
    the decoder does neither); b"" when that is no known encoding."""
    fields, _, _ = read_header(buf, p.hdr_start, p.body_start)
    value = None
    for name, v in fields:
        if name == b"content-transfer-encoding":
            value = v
    if value is None:
        return b"7bit"
    c = Cursor(value)
    c.skip_lwsp()
    start = pos = c.pos
    while pos < c.end and value[pos] in MIME_TOKEN:
        pos += 1
    c.pos = pos
    c.skip_lwsp()  # a comment after the token is fine, even an unterminated one
    token = value[start:pos].lower()
    if c.pos < c.end:
        return b""
    return token if token in IDENTITY or token in DECODED else b""


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def decode_base64(data: bytes) -> bytes:
    """Strict base64 (white space ignored): whole quanta, padding only at the very end."""
    compact = data.translate(None, b" \t\r\n")
    body = compact.rstrip(b"=")
    if (len(compact) % 4 or len(compact) - len(body) > 2
            or body.translate(None, _B64_ALPHABET)):
        raise BinaryParseError("Invalid data in MIME part")
    return binascii.a2b_base64(compact)


def decode_qp(data: bytes) -> bytes:
    """Quoted-printable of CRLF text: trailing white space dropped, ``=`` soft breaks; a
    soft break on the last line, or ``=`` not followed by two hex digits, is invalid."""
    lines = data.split(b"\r\n")
    out: list[bytes] = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        line = line.rstrip(b" \t")
        soft = line.endswith(b"=")
        if soft:
            if i == last:
                raise BinaryParseError("Invalid data in MIME part")
            line = line[:-1]
        if _QP_BAD_ESCAPE.search(line):
            raise BinaryParseError("Invalid data in MIME part")
        out.append(_QP_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), line))
        if not soft and i != last:
            out.append(b"\r\n")
    return b"".join(out)


def _encodings(buf: Buffer, parts: Sequence[Part], indexes: Sequence[int]) -> dict[int, bytes]:
    """The encoding of each part among ``indexes``; UnknownCTE if one is not supported
    (a message/rfc822 or multipart part too, although only leaves are decoded)."""
    out: dict[int, bytes] = {}
    for i in indexes:
        enc = part_encoding(buf, parts[i])
        if not enc:
            raise UnknownCTE("Unknown Content-Transfer-Encoding")
        out[i] = enc
    return out


def _parts_in(parts: Sequence[Part], start: int, end: int) -> list[int]:
    return [i for i, p in enumerate(parts) if start <= p.body_start and p.body_end <= end]


def _base64_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decode base64 chunk by chunk: white space ignored, padding only at the very end."""
    carry = b""
    padded = False
    for chunk in chunks:
        data = carry + chunk.translate(None, b" \t\r\n")
        if not data:
            continue
        if padded:
            raise BinaryParseError("Invalid data in MIME part")
        cut = len(data) - len(data) % 4
        carry = data[cut:]
        if cut:
            part = data[:cut]
            padded = part.endswith(b"=")
            yield decode_base64(part)
    if carry:
        raise BinaryParseError("Invalid data in MIME part")


def _qp_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decode quoted-printable line by line (see :func:`decode_qp`)."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        lines = data.split(b"\r\n")
        rest = lines.pop()
        out: list[bytes] = []
        for line in lines:
            line = line.rstrip(b" \t")
            soft = line.endswith(b"=")
            if soft:
                line = line[:-1]
            if _QP_BAD_ESCAPE.search(line):
                raise BinaryParseError("Invalid data in MIME part")
            out.append(_QP_ESCAPE.sub(_qp_octet, line))
            if not soft:
                out.append(b"\r\n")
        if out:
            yield b"".join(out)
    yield decode_qp(rest)


def _qp_octet(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 16),))


_Piece = tuple[bool, Iterator[bytes] | bytes]  # (decoded?, data or lazy chunks)


def _pieces(buf: Buffer, parts: Sequence[Part], section: Section) -> list[_Piece] | None:
    """BINARY[section] as byte strings and lazy decoders; None when it names no part."""
    kids = children_of(parts)
    rng = section_range(parts, section, kids)
    if rng is None:
        return None
    if section.specifier in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        data = header_fields(buf, rng[0], section.fields,
                             section.specifier == HEADER_FIELDS_NOT, not section.path)
        return [(False, data)]
    start, end = rng
    inside = _parts_in(parts, start, end)
    encodings = _encodings(buf, parts, inside)
    out: list[_Piece] = []
    pos = start
    for i in inside:
        p = parts[i]
        enc = encodings[i]
        if p.kind != LEAF or enc not in DECODED:
            continue
        if p.hdr_start >= start:
            # move the encoding field to the end of the header as "binary"
            ranges, blank = field_ranges(buf, p.hdr_start, p.body_start)
            hdr_end = blank if blank >= 0 else p.body_start
            for name, a, b in ranges:
                if name == b"content-transfer-encoding":
                    out.append((False, lf_to_crlf(bytes(buf[pos:a]))))
                    pos = b
            out.append((False, lf_to_crlf(bytes(buf[pos:hdr_end]))))
            # the rewritten header always ends in a blank line
            out.append((False, _CTE_BINARY + b"\r\n"))
            pos = p.body_start
        out.append((False, lf_to_crlf(bytes(buf[pos:p.body_start]))))
        body = _raw_crlf_chunks(buf, p.body_start, p.body_end)
        out.append((True, _base64_stream(body) if enc == b"base64" else _qp_stream(body)))
        pos = p.body_end
    out.append((False, _raw_crlf_chunks(buf, pos, end)))
    return out


def _raw_crlf_chunks(buf: Buffer, start: int, end: int) -> Iterator[bytes]:
    """Like sections.crlf_chunks, but NUL stays NUL (BINARY may send it in a literal8)."""
    pos = start
    while pos < end:
        cut = min(pos + (1 << 20), end)
        while cut < end and buf[cut - 1] == 0x0D:
            cut += 1
        yield lf_to_crlf(bytes(buf[pos:cut]))
        pos = cut


def _flatten(pieces: list[_Piece], seen: list[bool]) -> Iterator[bytes]:
    """The chunks; ``seen[0]`` becomes True once a decoded part yields data."""
    for decoded, piece in pieces:
        chunks = (piece,) if isinstance(piece, bytes) else piece
        for chunk in chunks:
            if chunk:
                if decoded:
                    seen[0] = True
                yield chunk


def binary_content(buf: Buffer, parts: Sequence[Part], section: Section) -> BinaryContent:
    """The octets of BINARY[section] (raises UnknownCTE / BinaryParseError)."""
    pieces = _pieces(buf, parts, section)
    if pieces is None:
        return BinaryContent(b"", False)
    seen = [False]
    content = b"".join(_flatten(pieces, seen))
    return BinaryContent(content, seen[0] or b"\x00" in content)


def binary_stream(buf: Buffer, parts: Sequence[Part], section: Section
                  ) -> tuple[int, bool, Iterator[bytes]]:
    """BINARY[section] for large parts: (size, literal8, chunks) in bounded memory. The
    data are decoded twice (once to size and check them, once to send), never held whole,
    so UnknownCTE / BinaryParseError surface before anything is sent."""
    pieces = _pieces(buf, parts, section)
    if pieces is None:
        return 0, False, iter(())
    size = 0
    nul = False
    seen = [False]
    for chunk in _flatten(pieces, seen):
        size += len(chunk)
        nul = nul or b"\x00" in chunk
    again = _pieces(buf, parts, section)
    assert again is not None
    return size, seen[0] or nul, _flatten(again, [False])


def binary_size(buf: Buffer, parts: Sequence[Part], section: Section) -> int:
    """BINARY.SIZE[section]: 0 for a part that does not exist; refused when any part of
    the message has an unknown encoding."""
    if section_range(parts, section) is None:
        return 0
    _encodings(buf, parts, range(len(parts)))
    pieces = _pieces(buf, parts, section)
    assert pieces is not None
    return sum(len(chunk) for chunk in _flatten(pieces, [False]))
