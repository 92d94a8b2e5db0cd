"""Reading a header block from message bytes, the way Dovecot's header parser sees it.

``read_header`` walks the lines of one header block (of the message or of a MIME part) in a
bytes-like buffer (``bytes`` or ``mmap``) and returns the fields with the values Dovecot
hands to ENVELOPE/BODYSTRUCTURE: one white space octet after the colon is dropped, and all
leading white space when the first line has text; continuation lines are joined with ``\\n``
keeping their leading white space; the CR of a CRLF line end is dropped; NUL becomes U+FFFD.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable

Buffer = bytes | bytearray | mmap.mmap
Field = tuple[bytes, bytes]  # (lower-case name, value)

REPLACEMENT_CHAR = b"\xef\xbf\xbd"
_WSP = b" \t"


def field_value(first: bytes) -> bytes:
    """The value part of a header's first line (text after the colon)."""
    if not first:
        return first
    if first[0] in (0x20, 0x09):
        rest = first.lstrip(_WSP)
        return rest if rest else first[1:]
    return first


def _finish(value: bytes) -> bytes:
    if b"\x00" in value:
        value = value.replace(b"\x00", REPLACEMENT_CHAR)
    return value


def read_header(
    buf: Buffer,
    pos: int,
    limit: int,
    stop_line: Callable[[int], bool] | None = None,
) -> tuple[list[Field], int, bool]:
    """Fields of the header block at ``pos``, the offset just after it, and whether it ended
    with an empty line. ``stop_line(offset)`` may end the block early (a MIME boundary line):
    then the returned offset is that line's start."""
    fields: list[Field] = []
    name = b""
    parts: list[bytes] = []
    have = False
    while pos < limit:
        nl = buf.find(b"\n", pos, limit)
        next_pos = limit if nl < 0 else nl + 1
        line_end = limit if nl < 0 else nl
        if line_end > pos and buf[line_end - 1] == 0x0D:
            line_end -= 1
        if line_end == pos:
            if nl < 0:
                pos = limit
                break
            if have:
                fields.append((name, _finish(b"\n".join(parts))))
            return fields, next_pos, True
        if stop_line is not None and buf[pos] == 0x2D and stop_line(pos):
            break
        line = bytes(buf[pos:line_end])
        if line[0] in (0x20, 0x09):
            if have:
                parts.append(line)
        else:
            if have:
                fields.append((name, _finish(b"\n".join(parts))))
            colon = line.find(b":")
            if colon < 0:
                name, first = line.rstrip(_WSP), b""
            else:
                name, first = line[:colon].rstrip(_WSP), field_value(line[colon + 1:])
            name = name.lower()
            parts = [first]
            have = True
        pos = next_pos
    if have:
        fields.append((name, _finish(b"\n".join(parts))))
    return fields, pos, False


def last_value(fields: Iterable[Field], name: bytes) -> bytes | None:
    """The value of the last field called ``name`` (lower case), or None."""
    found: bytes | None = None
    for key, value in fields:
        if key == name:
            found = value
    return found


def field_ranges(buf: Buffer, pos: int, limit: int) -> tuple[list[tuple[bytes, int, int]], int]:
    """(lower-case name, start, end) of every field of the header block at ``pos``, ``end``
    just after the field's last line end (continuation lines included), and the offset
    of the empty line ending the block (-1 if ``limit`` came first). A first line
    starting with white space is a field of its own, as for Dovecot."""
    out: list[tuple[bytes, int, int]] = []
    name = b""
    start = -1
    blank = -1
    while pos < limit:
        nl = buf.find(b"\n", pos, limit)
        next_pos = limit if nl < 0 else nl + 1
        line_end = limit if nl < 0 else nl
        if line_end > pos and buf[line_end - 1] == 0x0D:
            line_end -= 1
        if line_end == pos:
            if nl >= 0:
                blank = pos
            break
        first = buf[pos]
        if first not in (0x20, 0x09) or start < 0:
            if start >= 0:
                out.append((name, start, pos))
            head = bytes(buf[pos:min(line_end, pos + 1000)])
            colon = head.find(b":")
            name = (head if colon < 0 else head[:colon]).rstrip(_WSP).lower()
            start = pos
        pos = next_pos
    if start >= 0:
        out.append((name, start, pos))
    return out, blank
