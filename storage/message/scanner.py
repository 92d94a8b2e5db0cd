"""The streaming MIME structure scanner: one pass over message bytes, exact octet/line counts.

``scan(buf)`` walks a message held in ``bytes`` or an ``mmap`` (a 20 MB file is never copied
into Python memory: only header blocks and small slices are) and returns a flat, pre-order
tuple of :class:`Part` records, each a plain tuple of ints/bytes that serialises compactly
(``marshal``) into the index cache. Offsets are physical offsets into the buffer; sizes are
the CRLF-normalised ("virtual") sizes IMAP reports, so LF-only Maildir files give the same
answers as CRLF ones.

MIME rules follow Dovecot's parser, because its answers are the reference:
- a boundary line is any line starting with ``--boundary`` of an open multipart (the
  longest match, the innermost of equal ones); the line break before it belongs to it;
  ``--boundary--`` closes the multipart and what follows is epilogue; a missing close
  delimiter lets parts run to the enclosing boundary or the end; a boundary on the last,
  unterminated line opens no part; a multipart without a boundary has no children;
- a boundary cutting a part's header, or the innermost boundary right after its empty
  line, takes the preceding line break: the header ends before it and the body is empty;
- Content-* fields of a message with neither MIME-Version nor Content-Type are ignored; the
  first Content-Type wins (``type`` alone is allowed, ``multipart`` alone is not a
  multipart), the first readable encoding and language do, Content-Disposition fields
  replace each other until one has parameters; a text part without a charset gets
  ``charset=us-ascii``;
- a multipart or message part 100 levels deep becomes an opaque application/octet-stream,
  and the 10,000th part runs to the end of the message.
"""

from __future__ import annotations

import marshal
import mmap
from typing import NamedTuple

from cote.storage.message.envelope import envelope
from cote.storage.message.headers import Buffer, Field, read_header
from cote.storage.message.mimeparams import (
    Params,
    parse_content_type,
    parse_disposition,
    parse_encoding,
    parse_language,
)

LEAF, MULTIPART, MESSAGE = 0, 1, 2
MAX_DEPTH = 100
MAX_PARTS = 10000
_CHUNK = 1 << 20


class Part(NamedTuple):
    """One MIME entity. ``parent`` is the index of the enclosing part (-1 for the root)."""

    parent: int
    kind: int  # LEAF, MULTIPART or MESSAGE (message/rfc822: its child is the next part)
    hdr_start: int
    body_start: int
    body_end: int
    hdr_vsize: int
    body_vsize: int
    body_lines: int
    ctype: bytes
    subtype: bytes
    params: Params
    content_id: bytes | None
    description: bytes | None
    encoding: bytes | None  # None: no field ("7bit"); b"": a field that is not one token
    md5: bytes | None
    disposition: bytes | None
    disp_params: Params
    language: tuple[bytes, ...] | None
    location: bytes | None
    envelope: bytes | None  # set on the root part of the message and of each message/rfc822


def line_counts(buf: Buffer, start: int, end: int) -> tuple[int, int]:
    """(LF count, bare-LF count) of ``buf[start:end]``: lines and the CRLF size surplus."""
    if isinstance(buf, mmap.mmap):
        if end - start > _CHUNK:
            return line_counts_chunked(buf, start, end, _CHUNK)
        chunk = buf[start:end]
        lf = chunk.count(b"\n")
        return lf, lf - chunk.count(b"\r\n")
    lf = buf.count(b"\n", start, end)
    return lf, lf - buf.count(b"\r\n", start, end)


def line_counts_chunked(buf: Buffer, start: int, end: int, chunk_size: int) -> tuple[int, int]:
    """:func:`line_counts` reading ``chunk_size`` octets at a time (an mmap'ed big part)."""
    lf = crlf = 0
    pos = start
    while pos < end:
        cut = min(pos + chunk_size, end)
        while cut < end and buf[cut - 1] == 0x0D:
            cut += 1
        chunk = bytes(buf[pos:cut])
        lf += chunk.count(b"\n")
        crlf += chunk.count(b"\r\n")
        pos = cut
    return lf, lf - crlf


def virtual_size(buf: Buffer, start: int = 0, end: int | None = None) -> int:
    """Size with every bare LF counted as CRLF (RFC822.SIZE)."""
    if end is None:
        end = len(buf)
    return end - start + line_counts(buf, start, end)[1]


class _PrefixCounts:
    """Line counts of big ranges from per-chunk running totals, so nested parts (a 20 MB
    attachment inside the root multipart) are counted in one pass over the message, not
    once per nesting level. A CRLF belongs to the chunk holding its LF."""

    def __init__(self, buf: Buffer, end: int) -> None:
        self.buf = buf
        self.end = end
        self.lf = [0]  # LFs before chunk k (offset k * _CHUNK)
        self.crlf = [0]  # CRLFs whose LF lies before chunk k

    def _range(self, start: int, end: int) -> tuple[int, int]:
        """(LFs, CRLFs whose LF is in ``[start, end)``)."""
        chunk = bytes(self.buf[start:end])
        lf = chunk.count(b"\n")
        if not lf:
            return 0, 0
        crlf = chunk.count(b"\r\n") if b"\r" in chunk else 0
        if start > 0 and chunk[:1] == b"\n" and self.buf[start - 1] == 0x0D:
            crlf += 1
        return lf, crlf

    def prefix(self, pos: int) -> tuple[int, int]:
        """(LFs, CRLFs) whose LF is before ``pos``."""
        k = pos // _CHUNK
        while len(self.lf) <= k:
            i = len(self.lf) - 1
            lf, crlf = self._range(i * _CHUNK, min((i + 1) * _CHUNK, self.end))
            self.lf.append(self.lf[i] + lf)
            self.crlf.append(self.crlf[i] + crlf)
        lf, crlf = self._range(k * _CHUNK, pos) if pos > k * _CHUNK else (0, 0)
        return self.lf[k] + lf, self.crlf[k] + crlf

    def counts(self, start: int, end: int) -> tuple[int, int]:
        """As :func:`line_counts`: (LF count, bare-LF count) of ``buf[start:end]``."""
        if end - start <= 2 * _CHUNK:
            return line_counts(self.buf, start, end)
        lf0, crlf0 = self.prefix(start)
        lf1, crlf1 = self.prefix(end)
        crlf = crlf1 - crlf0
        if self.buf[start] == 0x0A and start > 0 and self.buf[start - 1] == 0x0D:
            crlf -= 1  # its CR is outside the range
        lf = lf1 - lf0
        return lf, lf - crlf


class _Scanner:
    def __init__(self, buf: Buffer, end: int) -> None:
        self.buf = buf
        self.end = end
        self.counter = _PrefixCounts(buf, end)
        self.parts: list[Part | None] = []
        self.bounds: list[bytes] = []  # b"--" + boundary, innermost last
        self.exhausted = False  # MAX_PARTS reached

    # -- boundaries -------------------------------------------------------------------
    def _boundary_at(self, ls: int) -> int:
        """The open boundary the line at ``ls`` starts with: the longest that matches, the
        innermost of equal ones (Dovecot's rule), or -1."""
        buf = self.buf
        best = -1
        best_len = 0
        for i in range(len(self.bounds) - 1, -1, -1):
            b = self.bounds[i]
            if len(b) > best_len and buf[ls:ls + len(b)] == b:
                best, best_len = i, len(b)
        return best

    def _is_boundary_line(self, ls: int) -> bool:
        return self._boundary_at(ls) >= 0

    def _next_boundary(self, pos: int) -> tuple[int, int]:
        """(line start, boundary index) of the next boundary line at/after ``pos``."""
        buf, end = self.buf, self.end
        if not self.bounds:
            return end, -1
        if pos < end and buf[pos:pos + 2] == b"--":
            i = self._boundary_at(pos)
            if i >= 0:
                return pos, i
        while True:
            j = buf.find(b"\n--", pos, end)
            if j < 0:
                return end, -1
            ls = j + 1
            i = self._boundary_at(ls)
            if i >= 0:
                return ls, i
            pos = ls

    def _content_end(self, start: int, ls: int) -> int:
        """Where content before the boundary line at ``ls`` ends (its line break excluded)."""
        if ls >= self.end:
            return self.end
        buf = self.buf
        e = ls
        if e > start and buf[e - 1] == 0x0A:
            e -= 1
            if e > start and buf[e - 1] == 0x0D:
                e -= 1
        return e

    def _line_after(self, ls: int) -> int:
        """Start of the line after the one at ``ls``; -1 when that line has no line end."""
        nl = self.buf.find(b"\n", ls, self.end)
        return -1 if nl < 0 else nl + 1

    # -- entities ---------------------------------------------------------------------
    def entity(self, pos: int, parent: int, mime: bool, digest: bool,
               depth: int) -> tuple[int, int, int]:
        """Scan the entity at ``pos``; return the boundary line that ended it (start,
        index in the boundary stack or -1 at the end) and where the entity's body ends."""
        buf = self.buf
        index = len(self.parts)
        self.parts.append(None)
        if len(self.parts) >= MAX_PARTS:
            # Dovecot's part limit: the last part runs to the end, boundaries are ignored
            self.bounds.clear()
            self.exhausted = True
        stop = self._is_boundary_line if self.bounds else None
        fields, body_start, ended = read_header(buf, pos, self.end, stop)
        info = _content_info(fields, mime, digest)
        ctype, subtype, params = info[0], info[1], info[2]
        lct, lsub = ctype.lower(), subtype.lower()
        kind = LEAF
        boundary = b""
        if lct == b"multipart":
            kind = MULTIPART
            boundary = _param(params, b"boundary") or b""
        elif lct == b"message" and lsub == b"rfc822":
            kind = MESSAGE
        if kind == MULTIPART and not subtype:
            # "multipart" without a subtype is not a multipart for Dovecot
            kind, ctype = LEAF, b"application"
            subtype = b"octet-stream"
        if kind != LEAF and depth >= MAX_DEPTH - 1:
            # Dovecot's nesting limit: the part becomes an opaque application/octet-stream
            # (its parameters kept, its boundary not used)
            kind, ctype, subtype = LEAF, b"application", b"octet-stream"
        if self.exhausted:
            kind = LEAF
        raw_end = -1
        if self.bounds and body_start < self.end and (not ended or (
                buf[body_start] == 0x2D
                and self._boundary_at(body_start) == len(self.bounds) - 1
                and not (boundary and buf[body_start + 2:body_start + 2 + len(boundary)]
                         == boundary))):
            # A boundary line cut the header, or the innermost boundary follows its empty
            # line at once: the line break before the boundary belongs to it, the part has
            # no body. (An encapsulated message still counts those octets in its
            # message/rfc822 part.)
            raw_end = body_start
            body_start = self._content_end(pos, body_start)
        env = None if mime else envelope(fields)
        if kind == MULTIPART and boundary:
            self.bounds.append(b"--" + boundary)
            level = len(self.bounds) - 1
            blen = len(boundary) + 2
            ls, idx = self._next_boundary(body_start)
            body_end = self._content_end(body_start, ls)
            child_digest = lsub == b"digest"
            while idx == level:
                after = self._line_after(ls)
                if after < 0:  # a boundary on the last, unterminated line opens no part
                    after = self.end
                    del self.bounds[level:]
                    ls, idx = self.end, -1
                    body_end = self.end
                    break
                if buf[ls + blen:ls + blen + 2] == b"--":
                    del self.bounds[level:]
                    ls, idx = self._next_boundary(after)
                    body_end = self._content_end(after, ls)
                    break
                ls, idx, body_end = self.entity(after, index, True, child_digest, depth + 1)
            del self.bounds[level:]
        elif kind == MESSAGE:
            if raw_end >= 0:
                # the part's header ran into a boundary: an empty encapsulated message
                ls, idx, _ = self.entity(body_start, index, False, False, depth + 1)
                body_end = body_start
            else:
                ls, idx, body_end = self.entity(body_start, index, False, False, depth + 1)
        else:
            ls, idx = self._next_boundary(body_start)
            body_end = self._content_end(body_start, ls)
        _, hbare = self.counter.counts(pos, body_start)
        blf, bbare = self.counter.counts(body_start, body_end)
        self.parts[index] = Part(
            parent, kind, pos, body_start, body_end,
            body_start - pos + hbare, body_end - body_start + bbare, blf,
            ctype, subtype, params, *info[3:], env,
        )
        return ls, idx, (raw_end if raw_end >= 0 and not mime else body_end)


_InfoTail = tuple[bytes | None, bytes | None, bytes | None, bytes | None, bytes | None,
                  Params, tuple[bytes, ...] | None, bytes | None]
_DEFAULT_TEXT = (b"text", b"plain", (b"charset", b"us-ascii"))


def _param(params: Params, name: bytes) -> bytes | None:
    for i in range(0, len(params) - 1, 2):
        if params[i].lower() == name:
            return params[i + 1]
    return None


def _content_info(fields: list[Field], mime: bool, digest: bool) -> tuple[
        bytes, bytes, Params, bytes | None, bytes | None, bytes | None, bytes | None,
        bytes | None, Params, tuple[bytes, ...] | None, bytes | None]:
    """(type, subtype, params, id, description, encoding, md5, disposition, disp params,
    language, location) from a header's Content-* fields."""
    got: dict[bytes, list[bytes]] = {}
    is_mime = mime
    for name, value in fields:
        if name.startswith(b"content-"):
            got.setdefault(name, []).append(value)
        elif name == b"mime-version":
            is_mime = True
    if b"content-type" in got:
        is_mime = True
    if not is_mime:
        got = {}

    def first(name: bytes) -> bytes | None:
        values = got.get(name)
        return values[0] if values else None

    ct = first(b"content-type")
    ctype: bytes
    subtype: bytes
    params: Params
    if ct is None:
        if digest:
            ctype, subtype, params = b"message", b"rfc822", ()
        else:
            ctype, subtype, params = _DEFAULT_TEXT
    else:
        ctype, subtype, params = parse_content_type(ct)
        if ctype.lower() == b"text" and _param(params, b"charset") is None:
            params = (*params, b"charset", b"us-ascii")
    # the first readable transfer encoding and language win
    encoding: bytes | None = None
    for value in got.get(b"content-transfer-encoding", ()):
        encoding = parse_encoding(value) or b""
        if encoding:
            break
    # each readable Content-Disposition replaces the previous one, until one has parameters
    disposition: bytes | None = None
    disp_params: Params = ()
    for value in got.get(b"content-disposition", ()):
        if disp_params:
            break
        disp, dparams = parse_disposition(value)
        if disp is not None:
            disposition, disp_params = disp, dparams
    language: tuple[bytes, ...] = ()
    for value in got.get(b"content-language", ()):
        language = parse_language(value)
        if language:
            break
    return (ctype, subtype, params, first(b"content-id"), first(b"content-description"),
            encoding, first(b"content-md5"), disposition, disp_params, language or None,
            first(b"content-location"))


def scan(buf: Buffer, end: int | None = None) -> tuple[Part, ...]:
    """The parts of the message in ``buf[0:end]`` in pre-order (root first)."""
    scanner = _Scanner(buf, len(buf) if end is None else end)
    scanner.entity(0, -1, False, False, 0)
    return tuple(p for p in scanner.parts if p is not None)


def scan_file(path: str) -> tuple[Part, ...]:
    """Scan a message file through mmap (bounded memory whatever its size)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            return scan(b"")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return scan(mm)


def dumps(parts: tuple[Part, ...]) -> bytes:
    """Serialise a scan result for the index cache."""
    return marshal.dumps(tuple(tuple(p) for p in parts))


def loads(data: bytes) -> tuple[Part, ...]:
    return tuple(Part(*p) for p in marshal.loads(data))  # noqa: S302 - our own cache bytes
