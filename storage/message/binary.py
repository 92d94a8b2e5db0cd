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
from collections.abc import Sequence
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
_B64_SPACE = re.compile(rb"[ \t\r\n]+")
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


def decode_base64(data: bytes) -> bytes:
    compact = _B64_SPACE.sub(b"", data)
    if not compact:
        return b""
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise BinaryParseError("Invalid data in MIME part") from e


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


def _decode(enc: bytes, body: bytes) -> bytes:
    if enc == b"base64":
        return decode_base64(body)
    if enc == b"quoted-printable":
        return decode_qp(body)
    return body


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


def binary_content(buf: Buffer, parts: Sequence[Part], section: Section) -> BinaryContent:
    """The octets of BINARY[section] (raises UnknownCTE / BinaryParseError)."""
    kids = children_of(parts)
    rng = section_range(parts, section, kids)
    if rng is None:
        return BinaryContent(b"", False)
    if section.specifier in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        data = header_fields(buf, rng[0], section.fields,
                             section.specifier == HEADER_FIELDS_NOT, not section.path)
        return BinaryContent(data, b"\x00" in data)
    start, end = rng
    inside = _parts_in(parts, start, end)
    encodings = _encodings(buf, parts, inside)
    out: list[bytes] = []
    decoded_any = False
    pos = start
    for i in inside:
        p = parts[i]
        if p.kind != LEAF or encodings[i] not in DECODED:
            continue
        body = lf_to_crlf(bytes(buf[p.body_start:p.body_end]))
        data = _decode(encodings[i], body)
        decoded_any = decoded_any or bool(data)
        if p.hdr_start >= start:
            # move the encoding field to the end of the header as "binary"
            ranges, blank = field_ranges(buf, p.hdr_start, p.body_start)
            hdr_end = blank if blank >= 0 else p.body_start
            for name, a, b in ranges:
                if name == b"content-transfer-encoding":
                    out.append(lf_to_crlf(bytes(buf[pos:a])))
                    pos = b
            out.append(lf_to_crlf(bytes(buf[pos:hdr_end])))
            out.append(_CTE_BINARY + b"\r\n")  # the rewritten header always ends in a blank line
            pos = p.body_start
        out.append(lf_to_crlf(bytes(buf[pos:p.body_start])))
        out.append(data)
        pos = p.body_end
    out.append(lf_to_crlf(bytes(buf[pos:end])))
    content = b"".join(out)
    return BinaryContent(content, decoded_any or b"\x00" in content)


def binary_size(buf: Buffer, parts: Sequence[Part], section: Section) -> int:
    """BINARY.SIZE[section]: 0 for a part that does not exist; refused when any part of
    the message has an unknown encoding."""
    if section_range(parts, section) is None:
        return 0
    _encodings(buf, parts, range(len(parts)))
    return len(binary_content(buf, parts, section).data)
