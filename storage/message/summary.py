"""What the index caches per message, computed in one scan: sizes, ENVELOPE, BODYSTRUCTURE,
BODY, the serialised part list (for BODY[section]/BINARY without rescanning), sort keys
(SEARCH BODY/TEXT scan the parts in bodysearch.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cote.storage.message.bodystructure import body, bodystructure
from cote.storage.message.headers import Buffer, Field, last_value, read_header
from cote.storage.message.scanner import Part, dumps, scan, virtual_size
from cote.storage.message.searchkeys import (
    display_address,
    parse_date,
    sort_address,
    subject_sort_key,
)


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
    # the root spans the message: its counts give RFC822.SIZE without another pass
    vsize = root.hdr_vsize + root.body_vsize if root.body_end == len(buf) \
        else virtual_size(buf)
    return parts, Summary(vsize, root.envelope or b"NIL", bodystructure(parts),
                          body(parts), dumps(parts), sort_keys(fields))

