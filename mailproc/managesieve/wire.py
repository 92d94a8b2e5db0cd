"""ManageSieve (RFC 5804) on the wire: command lines in, responses out, no I/O.

Shared by managesieve-login (pre-auth) and the managesieve mail process. A command line is
words separated by spaces: atoms (command names, numbers, bare ``*``), quoted strings with
``\\"`` and ``\\\\`` escapes, and literals ``{n+}``/``{n}`` followed by CRLF and n octets
(Pigeonhole accepts both literal forms from the client and sends no continuation). The
parser is incremental: a literal may arrive in many reads, and a line that breaks the
grammar becomes one :class:`BadLine` while the parser skips to its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 65536  # managesieve_max_line_length: the non-literal part of one command line
MAX_LITERAL = 64 * 1024 * 1024  # larger literals are refused before being read
INVALID_QUOTED = "Invalid input: Quoted string contains an invalid character"
_LITERAL = re.compile(rb"\{(\d{1,10})(\+?)\}\r?\n")


@dataclass(frozen=True, slots=True)
class Atom:
    """An unquoted word: a command name, a number, or a bare ``*``."""

    text: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or a literal (``literal`` says which)."""

    value: bytes
    literal: bool = False

    def text(self) -> str:
        return self.value.decode("utf-8", "surrogateescape")


Word = Atom | String


@dataclass(frozen=True, slots=True)
class Line:
    """One complete command line: its words in order (the first is the command name)."""

    words: tuple[Word, ...]
    size: int  # octets on the wire, line end included
    eol: int = 2  # the line end's octets (CRLF or a bare LF)

    @property
    def name(self) -> str:
        first = self.words[0] if self.words else None
        return first.text.upper() if isinstance(first, Atom) else ""

    @property
    def args(self) -> tuple[Word, ...]:
        return self.words[1:]


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that breaks the grammar (already skipped); ``reason`` is for the log."""

    reason: str
    too_long: bool = False
    name: str = ""  # the command name, when the line began with one
    literal: int = 0  # the size of a literal refused as too large (its octets skipped)


class _Incomplete(Exception):
    """More input is needed to finish the current line."""


class _Bad(Exception):
    """The current line is malformed."""


class _TooLong(Exception):
    """A word of the current line is longer than the parser takes."""


class _LiteralTooLarge(Exception):
    """A literal over ``max_literal``: its octets are skipped, never buffered."""

    def __init__(self, start: int, size: int) -> None:
        super().__init__(size)
        self.start = start
        self.size = size


class Parser:
    """Feed bytes, get lines. Bytes past the last complete line stay buffered."""

    def __init__(self, max_line: int = MAX_LINE, max_word: int = MAX_LITERAL,
                 max_literal: int = MAX_LITERAL) -> None:
        self.buffer = bytearray()
        self.max_line = max_line
        self.max_word = max_word  # longest quoted string or atom
        self.max_literal = max_literal
        self._skipping = False  # inside a bad line: drop input until its LF
        self._discard = 0  # octets of a refused literal still to drop

    def feed(self, data: bytes) -> list[Line | BadLine]:
        self.buffer += data
        out: list[Line | BadLine] = []
        while True:
            item = self.next()
            if item is None:
                return out
            out.append(item)

    def next(self) -> Line | BadLine | None:
        """The next complete line from the buffer, or None when more input is needed."""
        if self._discard:
            dropped = min(self._discard, len(self.buffer))
            del self.buffer[:dropped]
            self._discard -= dropped
            if self._discard:
                return None
            self._skipping = True  # then the rest of that command line
        if self._skipping:
            end = self.buffer.find(b"\n")
            if end < 0:
                self.buffer.clear()
                return None
            del self.buffer[:end + 1]
            self._skipping = False
        if not self.buffer:
            return None
        try:
            words, used = self._parse(bytes(self.buffer))
        except _TooLong:
            name = self._name()
            self._skip_line()
            return BadLine("argument too long", too_long=True, name=name)
        except _LiteralTooLarge as e:
            name = self._name()
            del self.buffer[:e.start]
            self._discard = e.size
            return BadLine("literal too large", too_long=True, name=name, literal=e.size)
        except _Incomplete:
            if self._plain_length() > self.max_line:
                name = self._name()
                self._skip_line()
                return BadLine("line too long", too_long=True, name=name)
            return None
        except _Bad as e:
            name = self._name()
            self._skip_line()
            return BadLine(str(e), name=name)
        eol = 2 if self.buffer[used - 2:used] == b"\r\n" else 1
        del self.buffer[:used]
        return Line(tuple(words), used, eol)

    def take_buffered(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def _name(self) -> str:
        m = re.match(rb"[A-Za-z]{1,32}(?=[ \r\n\"{])", self.buffer)
        return m.group(0).decode("ascii").upper() if m else ""

    def _plain_length(self) -> int:
        end = self.buffer.find(b"\n")
        return len(self.buffer) if end < 0 else end

    def _skip_line(self) -> None:
        end = self.buffer.find(b"\n")
        if end < 0:
            self.buffer.clear()
            self._skipping = True
        else:
            del self.buffer[:end + 1]

    def _parse(self, data: bytes) -> tuple[list[Word], int]:
        """Words of one line, Pigeonhole's parser's way: spaces between words may repeat or
        trail, a string may be followed by the next word directly, and a line that starts
        with a space has an empty command name."""
        words: list[Word] = []
        pos = 0
        n = len(data)
        plain = 0  # octets outside literals
        if n and data[0] == 0x20:
            words.append(Atom(""))
        while True:
            if plain > self.max_line:
                raise _Incomplete  # reported as too long by the caller
            while pos < n and data[pos] == 0x20:
                pos += 1
                plain += 1
            if pos >= n:
                raise _Incomplete
            c = data[pos]
            if c == 0x0D:
                if pos + 1 >= n:
                    raise _Incomplete
                if data[pos + 1] != 0x0A:
                    raise _Bad("CR sent without LF")
                return words, pos + 2
            if c == 0x0A:
                return words, pos + 1
            if c == 0x22:  # quoted string
                value = bytearray()
                i = pos + 1
                while True:
                    if i - pos > self.max_word + 1:
                        raise _TooLong
                    if i >= n:
                        raise _Incomplete
                    ch = data[i]
                    if ch == 0x5C:
                        if i + 1 >= n:
                            raise _Incomplete
                        nxt = data[i + 1]
                        if nxt not in (0x22, 0x5C):
                            raise _Bad("Escaped quoted-string character is not a "
                                       "QUOTED-SPECIAL.")
                        value.append(nxt)
                        i += 2
                        continue
                    if ch == 0x22:
                        break
                    if ch in (0x0D, 0x0A, 0x00):
                        raise _Bad(INVALID_QUOTED)
                    value.append(ch)
                    i += 1
                try:
                    bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise _Bad("Invalid UTF-8 character in quoted-string.") from None
                words.append(String(bytes(value)))
                plain += i + 1 - pos
                pos = i + 1
                continue
            if c == 0x7B:  # literal
                m = _LITERAL.match(data, pos)
                if m is None:
                    close = data.find(b"\n", pos)
                    if close < 0 and n - pos < 16:
                        raise _Incomplete
                    raise _Bad("Invalid literal size")
                size = int(m.group(1))
                if size > self.max_literal:
                    raise _LiteralTooLarge(m.end(), size)
                start = m.end()
                if n - start < size:
                    raise _Incomplete
                words.append(String(data[start:start + size], literal=True))
                plain += start - pos
                pos = start + size
                continue
            end = pos
            while end < n and data[end] not in (0x20, 0x0D, 0x0A):
                end += 1
            if end - pos > self.max_word:
                raise _TooLong
            if end >= n:
                raise _Incomplete
            token = data[pos:end]
            if any(b < 0x21 or b > 0x7E or b in b'"{}' for b in token):
                raise _Bad("Invalid characters in atom")
            words.append(Atom(token.decode("ascii")))
            plain += end - pos
            pos = end


# -- responses ---------------------------------------------------------------------------------
def string(value: str | bytes) -> bytes:
    """A string as Pigeonhole sends it: quoted when it can be, a literal otherwise."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(raw) > 1024 or any(b in b"\r\n\0" for b in raw):
        return b"{%d}\r\n" % len(raw) + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def response(kind: str, text: str | bytes | None = None, code: str | None = None) -> bytes:
    """``OK``/``NO``/``BYE`` with an optional ``(CODE)`` and text, CRLF-terminated."""
    out = kind.encode("ascii")
    if code:
        out += b" (" + code.encode("utf-8", "surrogateescape") + b")"
    if text is not None:
        out += b" " + string(text)
    return out + b"\r\n"


def ok(text: str | None = None, code: str | None = None) -> bytes:
    return response("OK", text, code)


def no(text: str | bytes | None = None, code: str | None = None) -> bytes:
    return response("NO", text, code)


def bye(text: str) -> bytes:
    return response("BYE", text)


def number(word: Word) -> int | None:
    """A number (an atom of digits; Pigeonhole takes 64-bit values), else None."""
    if isinstance(word, Atom) and word.text.isdigit() and word.text.isascii():
        value = int(word.text)
        return value if value < 2 ** 63 else None
    return None
