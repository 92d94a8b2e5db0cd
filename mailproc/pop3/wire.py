"""POP3 on the wire, without I/O: command lines in, reply bytes out.

Shared by the pop3-login process (AUTHORIZATION state) and the POP3 mail process
(TRANSACTION state). The line reader keeps its scan position, so input arriving a byte at a
time costs O(n); over-long lines are reported once and skipped up to the next LF, as a client
that pipelines after a bad line still expects answers to its later commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# RFC 2449 §4: a command line is at most 255 octets. Dovecot accepts longer ones (it answers
# an unknown 300-byte word with "Unknown command: <word>"), so the limit here is generous and
# only protects memory.
MAX_LINE = 8192


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: ``name`` as sent (callers compare case-insensitively), ``args`` raw."""

    name: str
    args: str

    @property
    def verb(self) -> str:
        return self.name.upper()


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line exceeded MAX_LINE; its bytes were discarded."""


class LineReader:
    """Splits a byte stream into POP3 command lines (LF or CRLF terminated)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self._max = max_line
        self._discarding = False

    def feed(self, data: bytes) -> Iterator[Command | LineTooLong]:
        for line in self.lines(data):
            yield line if isinstance(line, LineTooLong) else parse_command(line)

    def lines(self, data: bytes) -> Iterator[bytes | LineTooLong]:
        """Raw lines without their line end (stop iterating to leave the rest buffered)."""
        self._buf += data
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buf)
                if self._scanned > self._max:
                    if not self._discarding:
                        self._discarding = True
                        yield LineTooLong()
                    del self._buf[:]
                    self._scanned = 0
                return
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self._max:
                yield LineTooLong()
                continue
            yield line[:-1] if line.endswith(b"\r") else line

    def take_buffered(self) -> bytes:
        """Bytes read past the last complete line (pipelined input at a hand-off or STLS)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data


def parse_command(line: bytes) -> Command:
    """Split at the first space: Dovecot treats ``LIST\\t1`` as one unknown word."""
    if line.endswith(b"\r"):
        line = line[:-1]
    text = line.decode("utf-8", "surrogateescape")
    name, _, args = text.partition(" ")
    return Command(name, args.lstrip(" "))


def ok(text: str = "") -> bytes:
    return b"+OK " + text.encode("utf-8", "surrogateescape") + b"\r\n" if text else b"+OK\r\n"


def err(text: str, code: str | None = None) -> bytes:
    """``-ERR [CODE] text`` (RFC 2449 response codes: IN-USE, SYS/TEMP, SYS/PERM, AUTH)."""
    prefix = f"[{code}] " if code else ""
    return f"-ERR {prefix}{text}\r\n".encode("utf-8", "surrogateescape")


def multiline(first: bytes, lines: list[str]) -> bytes:
    """A status line followed by short text lines (CAPA, LIST, UIDL) and the terminator."""
    body = ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape") if lines else b""
    return first + dot_stuff_lines(body) + b".\r\n"


def dot_stuff_lines(data: bytes) -> bytes:
    """Dot-stuff complete CRLF lines (each line starting with '.' gets another '.')."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\n.", b"\n..")


class MessageEncoder:
    """Streams a stored message as a POP3 multi-line body.

    Converts bare LF (and bare CR) line ends to CRLF, dot-stuffs, optionally stops after the
    header and ``body_lines`` body lines (TOP), and finishes with a CRLF when the message lacks
    a final newline, then the ``.`` terminator. Works chunk by chunk so a 50 MB RETR never sits
    in memory whole. Bytes counts are of what is sent, for the logout statistics.
    """

    def __init__(self, body_lines: int | None = None, *, no_nuls: bool = False,
                 add_eoh: bool = False) -> None:
        # pop3_client_workarounds: outlook-no-nuls (NUL sent as 0x80), oe-ns-eoh (a message
        # whose header never ends gets the empty line those clients need).
        self._no_nuls = no_nuls
        self._add_eoh = add_eoh
        self._limit = body_lines
        self._in_body = False
        self._body_lines = 0
        self._at_line_start = True
        self._prev_cr = False
        self._blank_line = True  # the current line is empty so far (header end detection)
        self._done = False
        self._tail = b"\r\n"  # last output bytes, for finding the header's end across chunks
        self.sent = 0

    @property
    def done(self) -> bool:
        """True once TOP's line limit was reached: the rest of the message is not needed."""
        return self._done

    def encode(self, chunk: bytes) -> bytes:
        if self._limit is None:
            return self._encode_whole_lines(chunk)
        if self._done or not chunk:
            return b""
        out = bytearray()
        i, n = 0, len(chunk)
        while i < n and not self._done:
            if self._prev_cr and chunk[i] == 0x0A:  # the LF of a CRLF split across chunks
                self._prev_cr = False
                i += 1
                continue
            self._prev_cr = False
            # Find the end of the current line in this chunk.
            j = i
            while j < n and chunk[j] not in (0x0A, 0x0D):
                j += 1
            segment = chunk[i:j]
            if segment:
                if self._at_line_start and segment[:1] == b".":
                    out += b"."
                out += segment
                self._at_line_start = False
                self._blank_line = False
            if j == n:
                break
            # A line end: LF, CRLF or a bare CR, all sent as CRLF.
            if chunk[j] == 0x0D:
                if j + 1 < n:
                    i = j + 2 if chunk[j + 1] == 0x0A else j + 1
                else:
                    self._prev_cr = True
                    i = j + 1
            else:
                i = j + 1
            out += b"\r\n"
            self._end_line()
        data = bytes(out)
        if self._no_nuls:
            data = data.replace(b"\x00", b"\x80")
        self.sent += len(data)
        return data

    def _encode_whole_lines(self, chunk: bytes) -> bytes:
        """RETR's path: the same result as the line-by-line walk below, with a handful of
        C-speed replaces per chunk (no TOP line counting needed)."""
        if not chunk:
            return b""  # (an empty chunk leaves a pending CR pending)
        if self._prev_cr:
            self._prev_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
                if not chunk:
                    return b""
        self._prev_cr = chunk.endswith(b"\r")
        data = chunk
        if b"\r" in data:  # (Dovecot saves mail with bare LFs: no CR to look at)
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        data = data.replace(b"\n", b"\r\n")
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\n.", b"\n..")
        # (the header's end may straddle chunks; no copy of the whole chunk to find it)
        if not self._in_body and (b"\r\n\r\n" in self._tail + data[:3]
                                  or b"\r\n\r\n" in data):
            self._in_body = True
        self._tail = (self._tail + data[-3:])[-3:]
        self._at_line_start = data.endswith(b"\n")
        if self._no_nuls:
            data = data.replace(b"\x00", b"\x80")
        self.sent += len(data)
        return data

    def _end_line(self) -> None:
        if self._in_body:
            self._body_lines += 1
        elif self._blank_line:
            self._in_body = True
        self._at_line_start = True
        self._blank_line = True
        if self._in_body and self._limit is not None and self._body_lines >= self._limit:
            self._done = True

    def finish(self) -> bytes:
        """The terminator, preceded by CRLF if the last line had no line end (and by the
        missing end-of-header line with oe-ns-eoh)."""
        tail = b"" if self._at_line_start else b"\r\n"
        if self._add_eoh and not self._in_body and not self._done:
            tail += b"\r\n"
        tail += b".\r\n"
        self.sent += len(tail) - 3  # the terminator itself is not counted (as Dovecot)
        return tail
