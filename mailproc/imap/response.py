"""IMAP responses as exact bytes, appended to one buffered writer per connection.

The formatter never touches a socket: every function returns bytes or appends to a
``Writer`` that the I/O adapter drains. A FETCH body can be queued as a ``FileSpan`` (a
file descriptor range) instead of bytes, so answering FETCH BODY[] for 100,000 messages
streams: the command produces responses while ``writer.pending`` stays under a high-water
mark, the adapter sends (``os.sendfile`` for spans) and the command continues.
Strings are serialised by ``cote.imapwire`` exactly as Dovecot chooses.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cote import imapwire, mutf7

from .values import SeqSet

CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class FileSpan:
    """``length`` octets of the open file ``fd`` from ``offset``; the writer does not own
    the descriptor."""

    fd: int
    offset: int
    length: int


class Writer:
    """The output buffer: bytes and file spans in order. Small writes are joined lazily."""

    __slots__ = ("_items", "pending")

    def __init__(self) -> None:
        self._items: deque[bytes | FileSpan] = deque()
        self.pending = 0
        """Octets queued (spans included): compare with a high-water mark to pause."""

    def write(self, data: bytes) -> None:
        if data:
            self._items.append(data)
            self.pending += len(data)

    def write_span(self, span: FileSpan) -> None:
        if span.length:
            self._items.append(span)
            self.pending += span.length

    def drain(self) -> list[bytes | FileSpan]:
        """Everything queued, adjacent bytes joined; for adapters that use ``sendfile``."""
        out: list[bytes | FileSpan] = []
        run: list[bytes] = []
        while self._items:
            item = self._items.popleft()
            if isinstance(item, FileSpan):
                if run:
                    out.append(b"".join(run))
                    run = []
                out.append(item)
            else:
                run.append(item)
        if run:
            out.append(b"".join(run))
        self.pending = 0
        return out

    def take(self, limit: int | None = None) -> bytes:
        """Queued output as bytes (spans read with ``os.pread``), about ``limit`` octets at
        most when given. A span whose file ended early raises ``ShortSpan``: the literal
        length is already on the wire, so the connection must be closed."""
        parts: list[bytes] = []
        size = 0
        while self._items and (limit is None or size < limit):
            item = self._items.popleft()
            if isinstance(item, FileSpan):
                want = item.length if limit is None else max(1, min(item.length, limit - size))
                data = os.pread(item.fd, want, item.offset)
                if not data:
                    self.pending -= size + item.length
                    raise ShortSpan(f"file ended {item.length} octets early")
                if len(data) < item.length:
                    self._items.appendleft(
                        FileSpan(item.fd, item.offset + len(data), item.length - len(data)))
            else:
                data = item
            parts.append(data)
            size += len(data)
        self.pending -= size
        return b"".join(parts)


class ShortSpan(OSError):
    """A file span could not be read to its announced length."""


# -- building blocks --------------------------------------------------------------------------

def mailbox_name(name: str) -> bytes:
    """A mailbox name on the wire: modified UTF-7, then atom/quoted/literal as Dovecot."""
    return imapwire.astring(mutf7.encode(name).encode("latin-1"))


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(flags).encode("latin-1") + b")"


def code_text(code: str | bytes | None) -> bytes:
    if code is None:
        return b""
    c = code.encode("latin-1") if isinstance(code, str) else code
    return b"[" + c + b"] "


def timing(total: float, lock_wait: float, sync: float | None = None) -> str:
    """Dovecot 2.3's suffix of tagged replies: ``(0.001 + 0.000 secs).`` or with a third
    figure when the mailbox was synced."""
    if sync is None:
        return f"({total:.3f} + {lock_wait:.3f} secs)."
    return f"({total:.3f} + {lock_wait:.3f} + {sync:.3f} secs)."


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's tagged result as a value: ``Reply("NO", "Quota exceeded", "OVERQUOTA")``.
    Handlers return it; the session writes ``reply.to_bytes(tag)``."""

    status: str
    text: str
    code: str | None = None

    def to_bytes(self, tag: str) -> bytes:
        return tagged(tag, self.status, self.text, self.code)


def ok(text: str, code: str | None = None) -> Reply:
    return Reply("OK", text, code)


def no(text: str, code: str | None = None) -> Reply:
    return Reply("NO", text, code)


def bad(text: str, code: str | None = None) -> Reply:
    return Reply("BAD", text, code)


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                "Dec")


def internaldate(when: datetime | float) -> bytes:
    """``"05-Jan-2020 02:32:03 +0000"``: as Dovecot, in the server's time zone (a Maildir
    keeps only the instant), day zero-padded."""
    dt = datetime.fromtimestamp(when).astimezone() if isinstance(when, (int, float)) \
        else when.astimezone()
    off = dt.utcoffset() or timedelta()
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (f'"{dt.day:02d}-{_MONTH_NAMES[dt.month - 1]}-{dt.year:04d} '
            f'{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} '
            f'{sign}{minutes // 60:02d}{minutes % 60:02d}"').encode()


def tagged(tag: str, status: str, text: str, code: str | bytes | None = None) -> bytes:
    """``a OK [UIDNEXT 5] text``."""
    return b"%s %s %s%s\r\n" % (tag.encode("latin-1"), status.encode(), code_text(code),
                                 text.encode("utf-8"))


def untagged(status: str, text: str, code: str | bytes | None = None) -> bytes:
    """``* OK [UIDVALIDITY 3] UIDs valid`` / ``* BYE …`` / ``* NO …``."""
    return b"* %s %s%s\r\n" % (status.encode(), code_text(code), text.encode("utf-8"))


def continuation(text: str | bytes = b"OK") -> bytes:
    """``+ OK`` / ``+ idling`` / ``+ <base64 challenge>`` (``+ `` alone for empty)."""
    t = text.encode("latin-1") if isinstance(text, str) else text
    return b"+ " + t + CRLF


def capability(caps: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(caps).encode() + CRLF


def capability_code(caps: Iterable[str]) -> str:
    return "CAPABILITY " + " ".join(caps)


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def recent(n: int) -> bytes:
    return b"* %d RECENT\r\n" % n


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq


def flags(flag_names: Iterable[str]) -> bytes:
    return b"* FLAGS " + flag_list(flag_names) + CRLF


def permanentflags_code(flag_names: Iterable[str]) -> str:
    return "PERMANENTFLAGS (" + " ".join(flag_names) + ")"


def vanished(uids: SeqSet, earlier: bool = False) -> bytes:
    return b"* VANISHED %s%s\r\n" % (b"(EARLIER) " if earlier else b"", bytes(uids))


def enabled(caps: Iterable[str]) -> bytes:
    names = " ".join(caps)
    return b"* ENABLED" + ((" " + names).encode() if names else b"") + CRLF


def list_line(attributes: Iterable[str], delimiter: str | None, name: str, *,
              lsub: bool = False, extended: Sequence[bytes] = ()) -> bytes:
    """``* LIST (\\HasNoChildren) "." INBOX``; ``extended`` items such as
    ``b'("CHILDINFO" ("SUBSCRIBED"))'`` are appended after the name."""
    delim = b"NIL" if delimiter is None else imapwire.quoted(delimiter.encode())
    out = b"* %s (%s) %s %s" % (b"LSUB" if lsub else b"LIST",
                                " ".join(attributes).encode(), delim, mailbox_name(name))
    if extended:
        out += b" (" + b" ".join(extended) + b")"
    return out + CRLF


_STATUS_ORDER = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ",
                 "SIZE", "X-SIZE", "X-GUID")


def status(name: str, items: Mapping[str, int | str]) -> bytes:
    """``* STATUS INBOX (MESSAGES 3 UIDNEXT 4)``, items in Dovecot's order whatever order
    the client asked in (X-GUID's value is a string)."""
    keys = [k for k in _STATUS_ORDER if k in items]
    keys += [k for k in items if k not in _STATUS_ORDER]  # others keep the order given
    body = b" ".join(b"%s %s" % (k.encode(), str(items[k]).encode()) for k in keys)
    return b"* STATUS " + mailbox_name(name) + b" (" + body + b")" + CRLF


def search(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """``* SEARCH 1 2 3`` (``(MODSEQ n)`` appended for CONDSTORE searches)."""
    out = b" ".join(b"%d" % n for n in numbers)
    line = b"* SEARCH" + (b" " + out if out else b"")
    if modseq is not None:
        line += b" (MODSEQ %d)" % modseq
    return line + CRLF


_ESEARCH_ORDER = ("MIN", "MAX", "ALL", "COUNT", "MODSEQ")


def esearch(tag: str, uid: bool, results: Mapping[str, int | SeqSet]) -> bytes:
    """``* ESEARCH (TAG "a") UID MIN 1 MAX 3 ALL 1:3 COUNT 3`` (Dovecot's order of items,
    whatever order the client asked in; an empty ``ALL`` is left out as Dovecot does)."""
    out = b"* ESEARCH (TAG " + imapwire.string(tag.encode("latin-1")) + b")"
    if uid:
        out += b" UID"
    for k in _ESEARCH_ORDER:
        v = results.get(k)
        if v is None or (isinstance(v, SeqSet) and not v.ranges):
            continue
        out += b" " + k.encode() + b" " + (bytes(v) if isinstance(v, SeqSet) else b"%d" % v)
    return out + CRLF


def sort(numbers: Iterable[int]) -> bytes:
    out = b" ".join(b"%d" % n for n in numbers)
    return b"* SORT" + (b" " + out if out else b"") + CRLF


ThreadNode = tuple[int | None, tuple["ThreadNode", ...]]
"""(message number or None for a missing parent, children) of a THREAD result."""


def _thread_members(node: ThreadNode) -> str:
    number, children = node
    parts = [] if number is None else [str(number)]
    while len(children) == 1 and number is not None:  # a chain is written flat
        number, children = children[0]
        if number is None:
            break
        parts.append(str(number))
    if number is None or len(children) > 1:
        nested = "".join("(" + _thread_members(c) + ")" for c in children)
        parts.append(nested)
    return " ".join(p for p in parts if p)


def thread(roots: Iterable[ThreadNode]) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` from a forest of (number, children) nodes."""
    body = "".join("(" + _thread_members(r) + ")" for r in roots)
    return b"* THREAD" + (b" " + body.encode() if body else b"") + CRLF


def namespace(personal: Sequence[tuple[str, str | None]] | None,
              other: Sequence[tuple[str, str | None]] | None = None,
              shared: Sequence[tuple[str, str | None]] | None = None) -> bytes:
    """``* NAMESPACE (("" ".")) NIL NIL``: each group a list of (prefix, separator)."""
    def group(items: Sequence[tuple[str, str | None]] | None) -> bytes:
        if not items:
            return b"NIL"
        return b"(" + b"".join(
            b"(" + imapwire.string(mutf7.encode(prefix).encode("latin-1")) + b" "
            + (b"NIL" if sep is None else imapwire.string(sep.encode())) + b")"
            for prefix, sep in items) + b")"
    return b"* NAMESPACE " + group(personal) + b" " + group(other) + b" " + group(shared) + CRLF


def id_response(params: Mapping[str, str | None] | None) -> bytes:
    if not params:
        return b"* ID NIL\r\n"
    items = []
    for k, v in params.items():
        items.append(imapwire.string(k.encode()))
        items.append(imapwire.nstring(None if v is None else v.encode()))
    return b"* ID (" + b" ".join(items) + b")" + CRLF


def copyuid(uidvalidity: int, source: SeqSet, dest: SeqSet) -> str:
    return f"COPYUID {uidvalidity} {source} {dest}"


def appenduid(uidvalidity: int, uids: SeqSet) -> str:
    return f"APPENDUID {uidvalidity} {uids}"


class FetchResponse:
    """``* 12 FETCH (UID 5 FLAGS (\\Seen) BODY[] {3}\\r\\nabc)``, assembled from pieces.

    Items are written straight into the writer; a body can come from a file span so a large
    message is never concatenated in memory. Call ``close()`` to end the line.
    """

    __slots__ = ("_first", "_writer")

    def __init__(self, writer: Writer, seq: int) -> None:
        self._writer = writer
        self._first = True
        writer.write(b"* %d FETCH (" % seq)

    def _sep(self) -> None:
        if self._first:
            self._first = False
        else:
            self._writer.write(b" ")

    def item(self, name: str | bytes, value: bytes) -> FetchResponse:
        """A data item whose value is already IMAP syntax (``b"(\\\\Seen)"``, ``b"5"``)."""
        self._sep()
        self._writer.write((name.encode() if isinstance(name, str) else name) + b" " + value)
        return self

    def number(self, name: str, value: int) -> FetchResponse:
        return self.item(name, b"%d" % value)

    def flags(self, flag_names: Iterable[str]) -> FetchResponse:
        return self.item("FLAGS", flag_list(flag_names))

    def literal(self, name: str, data: bytes, *, binary: bool = False) -> FetchResponse:
        self._sep()
        head = b"~{%d}\r\n" if binary and b"\x00" in data else b"{%d}\r\n"
        self._writer.write(name.encode() + b" " + head % len(data))
        self._writer.write(data)
        return self

    def literal_span(self, name: str, span: FileSpan, *, binary: bool = False) -> FetchResponse:
        """A literal whose octets are read from a file when the adapter sends them."""
        self._sep()
        head = b"~{%d}\r\n" if binary else b"{%d}\r\n"
        self._writer.write(name.encode() + b" " + head % span.length)
        self._writer.write_span(span)
        return self

    def modseq(self, value: int) -> FetchResponse:
        return self.item("MODSEQ", b"(%d)" % value)

    def internaldate(self, when: datetime | float) -> FetchResponse:
        return self.item("INTERNALDATE", internaldate(when))

    def nstring(self, name: str, value: bytes | None) -> FetchResponse:
        return self.item(name, imapwire.nstring(value))

    def close(self) -> None:
        self._writer.write(b")\r\n")
