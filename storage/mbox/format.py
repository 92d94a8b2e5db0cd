"""The mbox file format as Dovecot writes and reads it (sans-IO: bytes in, records out).

A message is ``From <sender>  <asctime>`` + its header + Dovecot's metadata headers + an
empty line + the body + one empty separator line. The metadata headers are hidden from
clients and carry the IMAP state::

    X-IMAPbase: <uidvalidity> <last uid, 10 digits> [keyword …]   (first message only)
    X-UID: <uid>
    Status: [R][O]          R = \\Seen, O = not \\Recent any more
    X-Status: [A][F][T][D]  \\Answered \\Flagged \\Draft \\Deleted
    X-Keywords: [keyword …]
    Content-Length: <body octets>

``Content-Length`` is trusted when it lands on the next ``From`` line (or the end of the
file); otherwise the next message starts at the first ``\\n\\nFrom `` line. Body lines that
begin with ``From `` are written as they are (Content-Length delimits them, as Dovecot does);
``>From`` lines are left alone both ways.
"""

from __future__ import annotations

import re
import time
from calendar import timegm
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from cote.storage import flags as F

HIDDEN = frozenset({b"x-imapbase", b"x-imap", b"x-uid", b"status", b"x-status", b"x-keywords",
                    b"content-length"})
_MONTHS = {m.encode(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_FROM_DATE = re.compile(
    rb"(?:[A-Za-z]{3}) +([A-Za-z]{3}) +(\d{1,2}) +(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"(?: +[A-Z]{3,4})? +(\d{4})(?: +[-+]\d{4})?\s*\Z")
PADDING = 64  # spaces after X-Keywords in new or grown messages (Dovecot pads likewise)
X_STATUS = ((F.ANSWERED, "A"), (F.FLAGGED, "F"), (F.DRAFT, "T"), (F.DELETED, "D"))


class MboxFormatError(ValueError):
    pass


class Record(NamedTuple):
    """One message of the file: offsets and the state its headers carry."""

    from_off: int  # the From_ line
    hdr_off: int  # first header line
    body_off: int  # after the empty line ending the header
    body_end: int  # end of the body (the separator line not included)
    next_off: int  # where the next From_ line starts (or the file's end)
    uid: int  # 0: none (or invalid)
    bits: int  # system flag bits
    keywords: tuple[str, ...]
    old: bool  # Status has O: not \Recent
    internal_date: float
    kept: tuple[tuple[int, int], ...]  # byte ranges of the header lines clients see
    size: int  # octets clients see (kept header + empty line + body)


class Parsed(NamedTuple):
    uidvalidity: int
    last_uid: int
    keywords: list[str]
    records: list[Record]
    base_field: tuple[int, int] | None  # offsets of the 10-digit last-uid field


def from_date(line: bytes) -> float:
    """The time in a ``From sender  Wed Jan 01 10:00:00 2020`` line (0 when unreadable)."""
    parts = line.split(b" ", 1)
    rest = parts[1] if len(parts) > 1 else b""
    m = _FROM_DATE.search(rest)
    if m is None:
        return 0.0
    mon = _MONTHS.get(m.group(1).capitalize())
    if mon is None:
        return 0.0
    try:
        return float(timegm((int(m.group(6)), mon, int(m.group(2)), int(m.group(3)),
                             int(m.group(4)), int(m.group(5) or 0), 0, 0, 0)))
    except (ValueError, OverflowError):
        return 0.0


def from_line(sender: str, when: float) -> bytes:
    t = time.gmtime(when)
    return f"From {sender}  {time.strftime('%a %b %d %H:%M:%S %Y', t)}\n".encode()


def _is_from_line(data: bytes, pos: int) -> bool:
    end = data.find(b"\n", pos)
    line = data[pos:end if end >= 0 else len(data)]
    return line.startswith(b"From ") and from_date(line) != 0.0


def parse(data: bytes) -> Parsed:
    """Every message of an mbox file's bytes."""
    if data and not data.startswith(b"From "):
        raise MboxFormatError("mbox file doesn't begin with a From_ line")
    records: list[Record] = []
    uidvalidity = last_uid = 0
    keywords: list[str] = []
    base_field: tuple[int, int] | None = None
    pos = 0
    n = len(data)
    while pos < n:
        eol = data.find(b"\n", pos)
        if eol < 0:
            eol = n
        idate = from_date(data[pos:eol])
        hdr_off = min(eol + 1, n)
        # header ends at the first empty line
        if hdr_off < n and data[hdr_off:hdr_off + 1] == b"\n":
            hdr_end = hdr_off
        else:
            i = data.find(b"\n\n", hdr_off)
            hdr_end = i + 1 if i >= 0 else n
        body_off = min(hdr_end + 1, n)
        uid = bits = 0
        old = False
        kws: tuple[str, ...] = ()
        clen = -1
        kept: list[tuple[int, int]] = []
        kept_size = 0
        line_start = hdr_off
        hidden = False
        lname = b""
        while line_start < hdr_end:
            le = data.find(b"\n", line_start, hdr_end + 1)
            le = hdr_end if le < 0 else le + 1
            line = data[line_start:le]
            if line[:1] in (b" ", b"\t"):
                if not hidden:
                    kept.append((line_start, le))
                    kept_size += le - line_start
                elif lname == b"x-keywords":
                    kws += tuple(line.decode("utf-8", "replace").split())
                line_start = le
                continue
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            hidden = lname in HIDDEN
            if not hidden:
                kept.append((line_start, le))
                kept_size += le - line_start
            else:
                v = value.strip()
                if lname == b"x-uid":
                    uid = int(v) if v.isdigit() else 0
                elif lname == b"status":
                    if b"R" in v:
                        bits |= F.SEEN
                    old = b"O" in v
                elif lname == b"x-status":
                    for bit, letter in X_STATUS:
                        if letter.encode() in v:
                            bits |= bit
                elif lname == b"x-keywords":
                    kws = tuple(v.decode("utf-8", "replace").split())
                elif lname == b"content-length":
                    clen = int(v) if v.isdigit() else -1
                elif lname == b"x-imapbase" and not records:
                    words = v.split()
                    if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
                        uidvalidity, last_uid = int(words[0]), int(words[1])
                        keywords = [w.decode("utf-8", "replace") for w in words[2:]]
                        start = line_start + line.index(words[1], len(name) + 1)
                        base_field = (start, start + len(words[1]))
            line_start = le
        # where the body ends
        body_end = next_off = -1
        if clen >= 0:
            end = body_off + clen
            if end == n or (end < n and data[end:end + 1] == b"\n"
                            and (end + 1 == n or (data.startswith(b"From ", end + 1)
                                                  and _is_from_line(data, end + 1)))):
                body_end = end
                next_off = min(end + 1, n)
        if body_end < 0:
            i = body_off - 1
            while True:
                i = data.find(b"\n\nFrom ", max(i, body_off - 1))
                if i < 0 or _is_from_line(data, i + 2):
                    break
                i += 1
            if i >= 0:
                body_end = i + 1
                next_off = i + 2
            else:
                body_end = n - 1 if data.endswith(b"\n\n") and n - 1 >= body_off else n
                next_off = n
        size = kept_size + 1 + (body_end - body_off)
        records.append(Record(pos, hdr_off, body_off, body_end, next_off, uid, bits, kws, old,
                              idate, tuple(kept), size))
        pos = next_off
    return Parsed(uidvalidity, last_uid, keywords, records, base_field)


def visible(data: bytes, rec: Record) -> bytes:
    """The message as clients see it (metadata headers removed)."""
    head = b"".join(data[a:b] for a, b in rec.kept)
    return head + b"\n" + data[rec.body_off:rec.body_end]


def vsize_of(message: bytes) -> int:
    return len(message) + message.count(b"\n") - message.count(b"\r\n")


def metadata(uid: int, bits: int, keywords: Iterable[str], *, old: bool, body_len: int,
             base: tuple[int, int, Sequence[str]] | None = None, pad: int = 0) -> bytes:
    """Dovecot's metadata header block for one message; ``pad`` spaces end the X-Keywords
    line (Dovecot's room for later flag changes without moving the rest of the file)."""
    out = []
    if base is not None:
        uidv, last, kws = base
        words = " ".join([str(uidv), f"{last:010d}", *kws])
        out.append(f"X-IMAPbase: {words}\n")
    out.append(f"X-UID: {uid}\n")
    status = ("R" if bits & F.SEEN else "") + ("O" if old else "")
    out.append(f"Status: {status}\n")
    xs = "".join(letter for bit, letter in X_STATUS if bits & bit)
    if xs:
        out.append(f"X-Status: {xs}\n")
    out.append(f"X-Keywords: {' '.join(keywords)}{' ' * pad}\n")
    out.append(f"Content-Length: {body_len}\n")
    return "".join(out).encode()


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """A message (LF line ends) as (header lines, body); a message without an empty line is
    all header."""
    if message.startswith(b"\n"):
        return b"", message[1:]
    i = message.find(b"\n\n")
    if i < 0:
        return (message if message.endswith(b"\n") else message + b"\n"), b""
    return message[:i + 1], message[i + 2:]


def to_lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def entry(sender: str, when: float, message: bytes, *, uid: int, bits: int,
          keywords: Sequence[str], old: bool,
          base: tuple[int, int, Sequence[str]] | None = None) -> bytes:
    """One complete message entry (From_ line to separator) for a client's message."""
    head, body = split_message(to_lf(message))
    head = b"".join(ln for ln in _header_lines(head)
                    if ln.split(b":", 1)[0].strip().lower() not in HIDDEN)
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return (from_line(sender, when) + head
            + metadata(uid, bits, keywords, old=old, body_len=len(body), base=base,
                       pad=PADDING)
            + b"\n" + body + b"\n")


def _header_lines(head: bytes) -> list[bytes]:
    """Header fields with their continuation lines joined (so hidden ones go whole)."""
    out: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line
        else:
            out.append(line)
    return out


def _meta_lines(uid: int, bits: int, keywords: Sequence[str], *, old: bool, body_len: int,
                base: tuple[int, int, Sequence[str]] | None) -> dict[bytes, str]:
    """Each metadata field's new line (X-Keywords without padding, X-Status even when empty),
    by lower-case name, in the order a fresh block has them."""
    out: dict[bytes, str] = {}
    if base is not None:
        uidv, last, kws = base
        out[b"x-imapbase"] = "X-IMAPbase: " + " ".join([str(uidv), f"{last:010d}", *kws])
    out[b"x-uid"] = f"X-UID: {uid}"
    out[b"status"] = "Status: " + ("R" if bits & F.SEEN else "") + ("O" if old else "")
    out[b"x-status"] = "X-Status: " + "".join(letter for bit, letter in X_STATUS if bits & bit)
    out[b"x-keywords"] = "X-Keywords: " + " ".join(keywords)
    out[b"content-length"] = f"Content-Length: {body_len}"
    return out


def _header_spans(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Header fields (continuation lines joined) of ``data[start:end]`` as byte ranges."""
    spans: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        le = end if nl < 0 else nl + 1
        if data[pos:pos + 1] in (b" ", b"\t") and spans:
            spans[-1] = (spans[-1][0], le)
        else:
            spans.append((pos, le))
        pos = le
    return spans


def rewrite(data: bytes, recs: Sequence[Record], states: Sequence[tuple[int, int,
            tuple[str, ...], bool]], base: tuple[int, int, Sequence[str]]) -> bytes:
    """The whole file again: ``states[i]`` = (uid, bits, keywords, old) of ``recs[i]``;
    records left out of ``recs`` are expunged. The first message carries ``base``.

    As Dovecot edits a header block: metadata fields already there are updated where they
    are (an X-Status left without flags stays as ``X-Status: ``), missing ones are added
    at the end of the header (an empty X-Status is not added). A message keeps its length
    when the new header fits in the old one's room (the X-Keywords padding absorbs the
    difference), so offsets other readers (Dovecot's index) remember stay valid; one that
    grows gets fresh padding."""
    out = []
    for i, (rec, (uid, bits, kws, old)) in enumerate(zip(recs, states, strict=True)):
        body = data[rec.body_off:rec.body_end]
        fields = _meta_lines(uid, bits, kws, old=old, body_len=len(body),
                             base=base if i == 0 else None)
        kept_starts = {a for a, _ in rec.kept}
        lines: list[str | bytes] = []  # bytes: a kept line; str: a metadata line
        placed: set[bytes] = set()
        head_end = max(rec.body_off - 1, rec.hdr_off)
        for a, b in _header_spans(data, rec.hdr_off, head_end):
            if a in kept_starts:
                lines.append(data[a:b])
                continue
            name = data[a:b].split(b":", 1)[0].strip().lower()
            if name in fields and name not in placed:
                placed.add(name)
                lines.append(fields[name])
        for name, line in fields.items():
            if name not in placed and (name != b"x-status" or line != "X-Status: "):
                lines.append(line)
        size = sum(len(ln) if isinstance(ln, bytes) else len(ln.encode()) + 1 for ln in lines)
        room = head_end - rec.hdr_off
        pad = room - size if size <= room else PADDING
        block = b"".join(
            ln if isinstance(ln, bytes)
            else (ln + (" " * pad if ln.startswith("X-Keywords:") else "") + "\n").encode()
            for ln in lines)
        out.append(data[rec.from_off:rec.hdr_off])
        out.append(block)
        out.append(b"\n")
        out.append(body)
        out.append(b"\n")
    return b"".join(out)
