"""RFC 822/2822 lexical parsing of header values (atoms, quoted strings, comments, domains).

A small cursor over one header value, used by the address parser and the MIME parameter
parser. It follows the lenient rules Dovecot applies: 8-bit octets count as atom text,
comments and folding white space are skipped anywhere between tokens, the last comment seen is
remembered (an address without a display name takes it as its name), and CR/LF inside a
quoted string are dropped.
"""

from __future__ import annotations

# atext: ALPHA / DIGIT / "!#$%&'*+-/=?^_`{|}~" and, leniently, any 8-bit octet.
_ATEXT = bytes(
    c for c in range(256)
    if c >= 0x80 or (0x21 <= c <= 0x7E and chr(c) not in '()<>[]:;@\\,."')
)
ATEXT = frozenset(_ATEXT)
# RFC 2045 token: CHAR except SP, CTLs and tspecials ()<>@,;:\"/[]?=
MIME_TOKEN = frozenset(
    c for c in range(256) if c >= 0x80 or (0x21 <= c <= 0x7E and chr(c) not in '()<>@,;:\\"/[]?=')
)
_LWSP = frozenset(b" \t\r\n")
_ATEXT_DOT = ATEXT | {0x2E}


class Cursor:
    """A position in one header value; every ``parse_*`` skips the white space after it."""

    __slots__ = ("data", "dot_space", "end", "last_comment", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment = b""
        self.dot_space = False  # the last local part ended in "." followed by white space

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> int:
        """The next octet, or -1 at the end."""
        return self.data[self.pos] if self.pos < self.end else -1

    def skip_lwsp(self) -> int:
        """Skip white space and comments: 1 if data remains, 0 at the end, -1 if broken."""
        data, end = self.data, self.end
        pos = self.pos
        while pos < end:
            c = data[pos]
            if c in _LWSP:
                pos += 1
            elif c == 0x28:  # (
                pos = self._skip_comment(pos)
                if pos < 0:
                    self.pos = end
                    return -1
            else:
                break
        self.pos = pos
        return 1 if pos < end else 0

    def _skip_comment(self, pos: int) -> int:
        """Skip a (nested) comment; its text becomes ``last_comment``. Like Dovecot, an
        unterminated comment leaves the text before its last escape there."""
        data, end = self.data, self.end
        level = 1
        out = bytearray()
        self.last_comment = b""
        pos += 1
        start = pos
        while pos < end:
            c = data[pos]
            if c == 0x5C:  # backslash: the escaped octet starts the next chunk
                if pos + 1 >= end:
                    return -1
                out += data[start:pos]
                self.last_comment = bytes(out)
                pos += 1
                start = pos
            elif c == 0x28:
                level += 1
            elif c == 0x29:
                level -= 1
                if level == 0:
                    out += data[start:pos]
                    self.last_comment = bytes(out)
                    return pos + 1
            elif c == 0x0A:
                stop = pos - 1 if pos > start and data[pos - 1] == 0x0D else pos
                out += data[start:stop]
                start = pos + 1
            pos += 1
        return -1

    def parse_atom(self, out: bytearray, chars: frozenset[int] = ATEXT) -> int:
        """Append one atom; then as :meth:`skip_lwsp`. -1 if no atom starts here."""
        data, end = self.data, self.end
        start = pos = self.pos
        while pos < end and data[pos] in chars:
            pos += 1
        if pos == start:
            return -1
        out += data[start:pos]
        self.pos = pos
        if pos >= end:
            return 0
        return self.skip_lwsp()

    def parse_quoted_string(self, out: bytearray) -> int:
        """Append the unescaped content of a quoted string; a line break (CR)LF is dropped.
        An unterminated string returns -1 having appended the text before its last escape."""
        data, end = self.data, self.end
        pos = start = self.pos + 1
        while pos < end:
            c = data[pos]
            if c == 0x22:
                out += data[start:pos]
                self.pos = pos + 1
                return self.skip_lwsp()
            if c == 0x0A:
                stop = pos - 1 if pos > start and data[pos - 1] == 0x0D else pos
                out += data[start:stop]
                start = pos + 1
            elif c == 0x5C:
                pos += 1
                if pos >= end:
                    self.pos = end
                    return -1
                out += data[start:pos - 1]
                start = pos
            pos += 1
        self.pos = end
        return -1

    def parse_dot_atom(self, out: bytearray) -> int:
        """A domain's atom *("." atom), white space and comments allowed around the dots;
        -1 for a leading, trailing or doubled dot."""
        ret = self.parse_atom(out)
        while ret > 0 and self.data[self.pos] == 0x2E:
            out.append(0x2E)
            self.pos += 1
            if self.skip_lwsp() <= 0:
                return -1
            ret = self.parse_atom(out)
        return ret

    def parse_local_part(self, out: bytearray) -> int:
        """A local part as Dovecot reads it: atom text and dots in any order (".a", "a..b",
        "a." are taken); white space may precede a dot, but a final dot followed by anything
        but "@" makes it invalid (-1, with the text read so far left in ``out``)."""
        data, end = self.data, self.end
        self.dot_space = False
        if self.pos >= end or data[self.pos] not in _ATEXT_DOT:
            return -1
        while True:
            start = pos = self.pos
            while pos < end and data[pos] in _ATEXT_DOT:
                pos += 1
            out += data[start:pos]
            self.pos = pos
            if pos >= end:
                return 0
            ends_in_dot = data[pos - 1] == 0x2E
            self.dot_space = ends_in_dot and data[pos] in _LWSP
            if ends_in_dot and data[pos] != 0x40:
                # "a. b", "a.]": not a local part (the text read so far stays in out)
                if self.dot_space:
                    self.skip_lwsp()
                return -1
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if ends_in_dot or data[self.pos] != 0x2E:
                return ret
            # "a .b": the dot continues the local part only if atom text follows at once
            out.append(0x2E)
            self.pos += 1
            if self.pos >= end:
                return 0
            nxt = data[self.pos]
            if nxt not in _ATEXT_DOT:
                self.dot_space = nxt in _LWSP
                ret = self.skip_lwsp()
                return ret if nxt == 0x40 else -1

    def parse_phrase(self, out: bytearray) -> int:
        """1*word (obs-phrase: dots allowed), words joined by one space."""
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == 0x2E:
            return -1
        while True:
            if self.data[self.pos] == 0x22:
                ret = self.parse_quoted_string(out)
            else:
                ret = self.parse_atom(out, _ATEXT_DOT)
            if ret <= 0:
                return ret
            c = self.data[self.pos]
            if c not in _ATEXT_DOT and c != 0x22:
                return 1
            out.append(0x20)

    def parse_domain(self, out: bytearray) -> int:
        """After "@": a dot-atom or a [domain literal] (kept with its brackets)."""
        ret = self.skip_lwsp()
        if ret <= 0:
            return -1 if ret == 0 else ret
        if self.data[self.pos] != 0x5B:
            return self.parse_dot_atom(out)
        data, end = self.data, self.end
        start = pos = self.pos
        pos += 1
        while pos < end:
            c = data[pos]
            if c == 0x5C:
                pos += 1
                if pos >= end:
                    break
            elif c == 0x5D:
                out += data[start:pos + 1]
                self.pos = pos + 1
                return self.skip_lwsp()
            pos += 1
        self.pos = end
        return -1
