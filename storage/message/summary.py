"""What the index caches per message, computed in one scan: sizes, ENVELOPE, BODYSTRUCTURE,
BODY, the serialised part list (for BODY[section]/BINARY without rescanning), sort keys;
and the decoded text SEARCH BODY/TEXT looks at."""

from __future__ import annotations

import binascii
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cote.storage.message.binary import BinaryParseError, decode_base64, decode_qp, part_encoding
from cote.storage.message.bodystructure import body, bodystructure
from cote.storage.message.headers import Buffer, Field, last_value, read_header
from cote.storage.message.scanner import LEAF, Part, dumps, scan, virtual_size
from cote.storage.message.searchkeys import (
    display_address,
    parse_date,
    sort_address,
    subject_sort_key,
)
from cote.storage.message.sections import lf_to_crlf


class SortKeys(NamedTuple):
    subject: str  # RFC 5256 base subject, case-folded
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    sent: int | None  # Date header as a UTC timestamp (SORT DATE falls back to INTERNALDATE)
    sent_offset: int  # its zone offset in minutes (SENTBEFORE/SENTON compare its local date)


class Summary(NamedTuple):
    vsize: int
    envelope: bytes
    bodystructure: bytes
    body: bytes
    parts: bytes  # scanner.dumps(); scanner.loads() gives the Part tuple back
    sort: SortKeys


def sort_keys(fields: Sequence[Field]) -> SortKeys:
    date = parse_date(last_value(fields, b"date"))
    frm, to = _first(fields, b"from"), _first(fields, b"to")
    return SortKeys(
        subject_sort_key(last_value(fields, b"subject")),
        sort_address(frm), sort_address(to), sort_address(_first(fields, b"cc")),
        display_address(frm), display_address(to),
        None if date is None else date[0], 0 if date is None else date[1],
    )


def _first(fields: Sequence[Field], name: bytes) -> bytes | None:
    for key, value in fields:
        if key == name:
            return value
    return None


def summarize(buf: Buffer) -> tuple[tuple[Part, ...], Summary]:
    """Scan once and compute everything the index caches."""
    parts = scan(buf)
    root = parts[0]
    fields, _, _ = read_header(buf, 0, root.body_start)
    return parts, Summary(virtual_size(buf), root.envelope or b"NIL", bodystructure(parts),
                          body(parts), dumps(parts), sort_keys(fields))


def text_parts(buf: Buffer, parts: Sequence[Part]) -> Iterator[str]:
    """The decoded text of every text/* leaf (transfer encoding and charset undone;
    undecodable data is searched as it is), for SEARCH BODY/TEXT."""
    for p in parts:
        if p.kind != LEAF or p.ctype.lower() != b"text":
            continue
        raw = lf_to_crlf(bytes(buf[p.body_start:p.body_end]))
        enc = part_encoding(buf, p)
        try:
            if enc == b"base64":
                raw = decode_base64(raw)
            elif enc == b"quoted-printable":
                raw = decode_qp(raw)
        except (BinaryParseError, binascii.Error):
            pass
        charset = "us-ascii"
        for i in range(0, len(p.params) - 1, 2):
            if p.params[i].lower() == b"charset":
                charset = p.params[i + 1].decode("ascii", "replace") or "us-ascii"
        yield _decode_text(raw, charset)


def _decode_text(raw: bytes, charset: str) -> str:
    if charset.lower() in ("us-ascii", "ascii"):
        charset = "utf-8"  # 8-bit text labelled us-ascii is nearly always UTF-8
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")
