"""First pass over a complete IMAP command: bytes -> a tree of generic arguments.

Like Dovecot, cote reads a command's arguments in two steps: this module turns the raw
command (literal data inline, exactly as received) into atoms, quoted strings, literals and
lists, reporting the generic syntax errors (``Missing '"'``, ``Unexpected ')'`` …); the
grammar in ``commands.py`` then gives the tokens their meaning. Keeping the two apart makes
the error a client sees the same one Dovecot reports for the same bytes.
"""

from __future__ import annotations

import re

MAX_LITERAL_SIZE = 0xFFFFFFFF
TOKEN_ERRORS = frozenset({
    "8bit data in atom", "CR sent without LF", "Invalid characters in atom",
    "Invalid literal size", "Literal size too large", "Missing LF after literal size",
    "Missing ')'", "Missing '\"'",
    "Missing literal data", "NULs not allowed in strings", "Unexpected ')'",
    "literal8 not allowed here"})
"""The texts of ``TokenError``."""


class SyntaxErr(Exception):
    """A syntax error; ``str(exc)`` is the text after ``Error in IMAP command NAME: ``."""


class TokenError(SyntaxErr):
    """A syntax error of the generic token layer (quotes, lists, literals, atoms): the
    pre-login dialect shows these texts as they are."""


class Atom(bytes):
    """An unquoted token (also ``NIL``, numbers, ``\\Flags``, ``BODY[...]<..>``)."""

    __slots__ = ()


class Quoted(bytes):
    """A quoted string, unescaped."""

    __slots__ = ()


class Literal(bytes):
    """A ``{n}`` literal's octets."""

    __slots__ = ()


class LiteralMarker:
    """A literal announced at the end of the input whose data is not part of it (APPEND's
    streamed message): ``{size}``, ``{size+}``, ``~{size}``."""

    __slots__ = ("binary", "size", "synchronizing")

    def __init__(self, size: int, synchronizing: bool, binary: bool) -> None:
        self.size = size
        self.synchronizing = synchronizing
        self.binary = binary

    def __repr__(self) -> str:
        return f"LiteralMarker({self.size}, sync={self.synchronizing}, binary={self.binary})"


Arg = Atom | Quoted | Literal | list["Arg"] | LiteralMarker
Args = list[Arg]

# Octets that end an atom; "(" inside one is an error, as in Dovecot.
_ATOM_RUN = re.compile(rb'[^ ()\r\n"{\x00-\x1f\x7f\x80-\xff]*')
_QUOTED_RUN = re.compile(rb'[^"\\\r\n\x00]*')
_LITERAL_HEAD = re.compile(rb"~?\{([0-9]*)([+-]?)\}")


def tokenize(data: bytes, pos: int = 0, end: int | None = None, *,
             stream_last_literal: bool = False, max_args: int = 0) -> tuple[Args, int]:
    """Tokens of ``data[pos:end]`` (a command's arguments, literal data inline).

    Returns the top-level list and the position where reading stopped (``end`` or the
    position after a trailing literal marker when ``stream_last_literal`` is set and the
    input ends with a literal whose data is not included). With ``max_args`` reading stops
    after that many top-level arguments, as Dovecot does for commands with fixed arity.
    """
    if end is None:
        end = len(data)
    root: Args = []
    stack: list[Args] = [root]
    cur = root
    while pos < end:
        if max_args and len(root) >= max_args and len(stack) == 1:
            return root, pos  # like Dovecot, what follows is never read
        c = data[pos]
        if c == 0x20:
            pos += 1
            continue
        if c == 0x28:  # (
            new: Args = []
            cur.append(new)
            stack.append(new)
            cur = new
            pos += 1
            continue
        if c == 0x29:  # )
            if len(stack) == 1:
                raise TokenError("Unexpected ')'")
            stack.pop()
            cur = stack[-1]
            pos += 1
            continue
        if c == 0x22:  # "
            pos += 1
            parts = []
            while True:
                m = _QUOTED_RUN.match(data, pos, end)
                assert m is not None
                parts.append(data[pos:m.end()])
                pos = m.end()
                if pos >= end:
                    raise TokenError("Missing '\"'")
                ch = data[pos]
                if ch == 0x22:
                    pos += 1
                    break
                if ch == 0x5C:  # backslash: the next octet as is (Dovecot is lenient)
                    if pos + 1 >= end or data[pos + 1] in (0x0D, 0x0A):
                        raise TokenError("Missing '\"'")
                    if data[pos + 1] == 0:
                        raise TokenError("NULs not allowed in strings")
                    parts.append(data[pos + 1:pos + 2])
                    pos += 2
                    continue
                if ch == 0:
                    raise TokenError("NULs not allowed in strings")
                raise TokenError("Missing '\"'")
            cur.append(Quoted(b"".join(parts)))
            continue
        if c == 0x7B or (c == 0x7E and pos + 1 < end and data[pos + 1] == 0x7B):  # { ~{
            m = _LITERAL_HEAD.match(data, pos, end)
            if m is None or not m.group(1):
                raise TokenError("Invalid literal size")
            size = int(m.group(1))
            binary = c == 0x7E
            sync = not m.group(2)
            pos = m.end()
            if size > MAX_LITERAL_SIZE:
                raise TokenError("Literal size too large")
            # the literal header ends the line
            if pos < end and data[pos] == 0x0D:
                pos += 1
            if pos < end and data[pos] == 0x0A:
                pos += 1
            elif pos >= end and stream_last_literal and len(stack) == 1:
                cur.append(LiteralMarker(size, sync, binary))
                return root, pos
            elif pos < end:
                raise TokenError("Missing LF after literal size")
            if pos >= end and stream_last_literal and len(stack) == 1:
                cur.append(LiteralMarker(size, sync, binary))
                return root, pos
            if binary:
                raise TokenError("literal8 not allowed here")
            if pos + size > end:
                raise TokenError("Missing literal data")
            cur.append(Literal(data[pos:pos + size]))
            pos += size
            continue
        if c in {13, 10}:
            if c == 0x0D and (pos + 1 >= end or data[pos + 1] != 0x0A):
                raise TokenError("CR sent without LF")
            break
        # an atom
        start = pos
        m = _ATOM_RUN.match(data, pos, end)
        assert m is not None
        pos = m.end()
        if pos < end:
            ch = data[pos]
            if ch in {40, 34, 123} or (ch < 32 and ch not in (13, 10)) or ch == 127:
                raise TokenError("Invalid characters in atom")
            if ch >= 0x80:
                raise TokenError("8bit data in atom")
            if ch == 0x0D and (pos + 1 >= end or data[pos + 1] != 0x0A):
                raise TokenError("CR sent without LF")
            if ch == 0x29 and len(stack) == 1:  # the ")" ending an atom is read with it
                raise TokenError("Unexpected ')'")
        cur.append(Atom(data[start:pos]))
    if len(stack) > 1:
        raise TokenError("Missing ')'")
    return root, pos


def is_nil(arg: object) -> bool:
    return isinstance(arg, Atom) and len(arg) == 3 and arg.upper() == b"NIL"


def is_string(arg: object) -> bool:
    return type(arg) is Quoted or type(arg) is Literal


def is_astring(arg: object) -> bool:
    return type(arg) in (Atom, Quoted, Literal)
