"""Fuzz entry point for message parsing (atheris-compatible, also driven by hypothesis).

``fuzz_message(data)`` scans arbitrary bytes as a message and runs every producer on the
result: ENVELOPE, BODYSTRUCTURE, BODY, section contents (whole and partial), BINARY and
the index summary, checking the scan's invariants. The only exceptions allowed out of the
producers are the protocol answers ``UnknownCTE`` / ``BinaryParseError``; anything else —
or a broken invariant — is a bug.

    import atheris; atheris.Setup(sys.argv, fuzz_message); atheris.Fuzz()
"""

from __future__ import annotations

from cote.storage.message.binary import BinaryParseError, UnknownCTE, binary_content, binary_size
from cote.storage.message.bodysearch import Needle, text_matches
from cote.storage.message.bodystructure import body, bodystructure
from cote.storage.message.scanner import Part, dumps, loads
from cote.storage.message.sections import parse_section, section_content
from cote.storage.message.summary import summarize

_SECTIONS = [parse_section(s) for s in (
    b"", b"HEADER", b"TEXT", b"1", b"2.MIME", b"1.1", b"1.HEADER", b"2.1.TEXT",
    b"HEADER.FIELDS (FROM SUBJECT)", b"1.HEADER.FIELDS.NOT (TO)")]


class InvariantError(AssertionError):
    """The scan result contradicts itself."""


def check_invariants(data: bytes, parts: tuple[Part, ...]) -> None:
    if not parts or parts[0].hdr_start != 0 or parts[0].parent != -1:
        raise InvariantError("the root part must start at 0")
    for i, p in enumerate(parts):
        if not 0 <= p.hdr_start <= p.body_start <= p.body_end <= len(data):
            raise InvariantError(f"part {i}: offsets out of order")
        if p.body_vsize < p.body_end - p.body_start:
            raise InvariantError(f"part {i}: virtual size below physical size")
        if p.body_lines != data.count(b"\n", p.body_start, p.body_end):
            raise InvariantError(f"part {i}: line count")
        if p.parent >= i:
            raise InvariantError(f"part {i}: parent after child")
    if loads(dumps(parts)) != parts:
        raise InvariantError("cache round trip")


def fuzz_message(data: bytes) -> None:
    parts, summary = summarize(data)
    check_invariants(data, parts)
    if not (bodystructure(parts).startswith(b"(") and body(parts).startswith(b"(")
            and summary.envelope.startswith(b"(")):
        raise InvariantError("producers must return IMAP lists")
    text_matches(data, parts, Needle("x"))
    for sec in _SECTIONS:
        section_content(data, parts, sec)
        section_content(data, parts, sec, (3, 17))
        try:
            binary_content(data, parts, sec)
            binary_size(data, parts, sec)
        except (UnknownCTE, BinaryParseError):
            pass
