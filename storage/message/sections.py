"""BODY[section] / BINARY[section] resolution: which bytes of the message file to send.

``parse_section`` reads the text between the brackets; ``resolve`` maps it onto the scanned
parts with Dovecot's navigation rules (a non-multipart entity accepts one ``.1`` meaning
its own body; a message/rfc822 part hands the next number to the message inside it; a
missing part gives empty content, not an error); ``section_content`` returns the octets with
bare LFs sent as CRLF, and ``crlf_chunks`` streams them for large parts with bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cote.storage.message.bodystructure import children_of
from cote.storage.message.headers import Buffer, field_ranges
from cote.storage.message.scanner import MESSAGE, MULTIPART, Part, line_counts

_CHUNK = 1 << 20

HEADER = b"HEADER"
TEXT = b"TEXT"
MIME = b"MIME"
HEADER_FIELDS = b"HEADER.FIELDS"
HEADER_FIELDS_NOT = b"HEADER.FIELDS.NOT"


class Section(NamedTuple):
    """``1.2.HEADER.FIELDS (A B)`` → ((1, 2), b"HEADER.FIELDS", (b"A", b"B"))."""

    path: tuple[int, ...]
    specifier: bytes  # b"", HEADER, TEXT, MIME, HEADER_FIELDS, HEADER_FIELDS_NOT
    fields: tuple[bytes, ...] = ()


class SectionError(ValueError):
    """Not a valid section: the IMAP layer answers BAD "Invalid BODY[..] section"."""


_SECTION = re.compile(
    rb"^((?:\d+\.)*\d+)?(?:(?(1)\.)(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    rb"(?:\s*\((.*)\))?$", re.IGNORECASE | re.DOTALL)
_ASTRING = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)', re.DOTALL)


def parse_section(text: bytes) -> Section:
    """Parse the inside of ``BODY[...]``."""
    m = _SECTION.match(text.strip())
    if not m:
        raise SectionError("Invalid BODY[..] section")
    nums, spec, flist = m.group(1), (m.group(2) or b"").upper(), m.group(3)
    path = tuple(int(n) for n in nums.split(b".")) if nums else ()
    if spec == MIME and not path:
        raise SectionError("Invalid BODY[..] section")
    if spec in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        if flist is None:
            raise SectionError("Invalid BODY[..] section")
        names = tuple(
            (q if q is not None else re.sub(rb"\\(.)", rb"\1", a or b"")).upper()
            for a, q in ((mm.group(1), mm.group(2)) for mm in _ASTRING.finditer(flist))
        )
        if not names:
            raise SectionError("Invalid BODY[..] section")
        return Section(path, spec, names)
    if flist is not None:
        raise SectionError("Invalid BODY[..] section")
    return Section(path, spec)


def resolve(parts: Sequence[Part], path: Sequence[int],
            kids: list[list[int]] | None = None) -> tuple[int, bool]:
    """The entity a section path names and whether the path ended on its ".1" (the entity's
    own body); (-1, False) when there is none."""
    if kids is None:
        kids = children_of(parts)

    def contain(entity: int, num: int) -> tuple[int, bool]:
        # number ``num`` inside a message whose top entity is ``entity``
        if parts[entity].kind == MULTIPART:
            children = kids[entity]
            n = max(num, 1)
            return (children[n - 1], False) if n <= len(children) else (-1, False)
        return (entity, True) if num == 1 else (-1, False)

    entity, consumed = -1, False
    for num in path:
        if entity < 0:
            entity, consumed = contain(0, num)
        elif parts[entity].kind == MESSAGE:
            if not kids[entity]:
                return -1, False
            entity, consumed = contain(kids[entity][0], num)
        elif consumed:
            return -1, False
        else:
            entity, consumed = contain(entity, num)
        if entity < 0:
            return -1, False
    return (0, True) if entity < 0 else (entity, consumed)


def section_range(parts: Sequence[Part], section: Section,
                  kids: list[list[int]] | None = None) -> tuple[int, int] | None:
    """The physical byte range a section covers (for HEADER.FIELDS*, the header block to
    filter); None when the message has no such part (Dovecot then sends empty content)."""
    if kids is None:
        kids = children_of(parts)
    if section.path:
        entity, _ = resolve(parts, section.path, kids)
        if entity < 0:
            return None
        if section.specifier == b"":
            p = parts[entity]
            return p.body_start, p.body_end
        if section.specifier == MIME:
            p = parts[entity]
            return p.hdr_start, p.body_start
        if parts[entity].kind != MESSAGE or not kids[entity]:
            return None
        entity = kids[entity][0]
    else:
        entity = 0
        if section.specifier == b"":
            return parts[0].hdr_start, parts[0].body_end
    p = parts[entity]
    if section.specifier == TEXT:
        return p.body_start, p.body_end
    return p.hdr_start, p.body_start


def header_fields(buf: Buffer, start: int, names: Sequence[bytes], exclude: bool,
                  top: bool) -> bytes:
    """HEADER.FIELDS (or .NOT) of the header block at ``start``: the matching fields in
    message order with CRLF line ends, then the empty line. As Dovecot does, the block is
    read up to its empty line even past the end of its MIME part; for the message's own
    header, HEADER.FIELDS always ends with an empty line, otherwise the empty line is
    there only if the block had one."""
    wanted = {n.lower() for n in names}
    ranges, blank = field_ranges(buf, start, len(buf))
    out = [to_crlf(bytes(buf[a:b])) for name, a, b in ranges if (name in wanted) != exclude]
    if (top and not exclude) or blank >= 0:
        out.append(b"\r\n")
    return b"".join(out)


def lf_to_crlf(data: bytes) -> bytes:
    """Bare LFs as CRLF (a CR already before an LF is kept, lone CRs are left alone)."""
    if b"\n" not in data:
        return data
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_crlf(data: bytes) -> bytes:
    """:func:`lf_to_crlf` and NUL as 0x80: BODY[] never carries NUL (Dovecot's
    substitution; BINARY[] sends NUL in a literal8)."""
    if b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return lf_to_crlf(data)


def crlf_size(buf: Buffer, start: int, end: int) -> int:
    """Size of ``buf[start:end]`` once bare LFs are CRLF."""
    return end - start + line_counts(buf, start, end)[1]


def crlf_chunks(buf: Buffer, start: int, end: int, offset: int = 0,
                length: int | None = None, *, chunk_size: int = _CHUNK) -> Iterator[bytes]:
    """Stream ``buf[start:end]`` CRLF-converted, from converted ``offset`` for ``length``
    octets (a <partial>), in chunks of about 1 MB: bounded memory for any size."""
    remaining = -1 if length is None else length
    skip = offset
    pos = start
    while pos < end and remaining != 0:
        cut = min(pos + chunk_size, end)
        while cut < end and buf[cut - 1] == 0x0D:
            cut += 1
        chunk = to_crlf(bytes(buf[pos:cut]))  # never cut between CR and LF
        pos = cut
        if skip:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            chunk = chunk[skip:]
            skip = 0
        if remaining >= 0:
            chunk = chunk[:remaining]
            remaining -= len(chunk)
        if chunk:
            yield chunk


def section_content(buf: Buffer, parts: Sequence[Part], section: Section,
                    partial: tuple[int, int] | None = None) -> bytes:
    """The exact octets Dovecot sends for BODY[section]<partial> (CRLF line ends)."""
    rng = section_range(parts, section)
    if rng is None:
        return b""
    if section.specifier in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        data = header_fields(buf, rng[0], section.fields,
                             section.specifier == HEADER_FIELDS_NOT, not section.path)
        if partial is not None:
            data = data[partial[0]:partial[0] + partial[1]]
        return data
    if partial is None:
        return b"".join(crlf_chunks(buf, rng[0], rng[1]))
    return b"".join(crlf_chunks(buf, rng[0], rng[1], partial[0], partial[1]))
