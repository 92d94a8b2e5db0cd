"""IMAP wire serialisation of strings, shared by the message producers and the IMAP server.

Every function takes bytes and returns the exact bytes Dovecot 2.3 puts on the wire for the
same value, so ENVELOPE/BODYSTRUCTURE/LIST answers match Dovecot octet for octet:

* ``string``: a quoted string unless the value holds CR, LF, an 8-bit octet or NUL, or needs
  more than four backslash escapes (``"`` and ``\\``); then a ``{n}\\r\\n`` literal.
* ``nstring``: ``NIL`` for ``None``, else ``string``.
* ``nstring_nolf``: CR/LF removed first (a space kept where a line break was not followed by
  white space), as Dovecot does for header values it sends verbatim (date, message-id, …).
* ``string_for_humans``: for subjects and display names: white space runs (SP, TAB, CR, LF)
  collapse to one space and are trimmed at both ends; any such change, a ``"``/``\\`` or an
  8-bit octet makes it a literal, else it is a plain quoted string.
* ``astring``: an atom when every octet is an ASTRING-CHAR (and it is neither empty nor NIL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NIL = b"NIL"

# A quoted string cannot carry these at all: they force a literal.
_NEEDS_LITERAL = re.compile(rb"[\x00\r\n\x80-\xff]")
# Dovecot writes a literal rather than a quoted string needing more than this many escapes.
_MAX_QUOTED_ESCAPES = 4
_ESCAPE = re.compile(rb'(["\\])')
_LINEBREAK = re.compile(rb"[\r\n]+")
_WSP_RUN = re.compile(rb"[ \t\r\n]+")
_HUMAN_MODIFY = re.compile(rb'["\\\t\r\n\x00\x80-\xff]|  |^ | $')
# ATOM-CHAR plus resp-specials "]": CHAR except ( ) { SP CTL % * " \
_NOT_ASTRING = re.compile(rb'[^\x21\x23-\x24\x26-\x27\x2b-\x5b\x5d-\x7a\x7c\x7e]')


def literal(value: bytes) -> bytes:
    """``{n}\\r\\n`` followed by the octets."""
    return b"{%d}\r\n%b" % (len(value), value)


def quoted(value: bytes) -> bytes:
    """A quoted string; octets a quoted string cannot carry (CR, LF, 8-bit, NUL) are dropped."""
    if _NEEDS_LITERAL.search(value):
        value = _NEEDS_LITERAL.sub(b"", value)
    if b'"' in value or b"\\" in value:
        value = _ESCAPE.sub(rb"\\\1", value)
    return b'"' + value + b'"'


def string(value: bytes) -> bytes:
    """Quoted or literal, chosen as Dovecot chooses."""
    if _NEEDS_LITERAL.search(value):
        return literal(value)
    escapes = value.count(b'"') + value.count(b"\\")
    if escapes == 0:
        return b'"' + value + b'"'
    if escapes > _MAX_QUOTED_ESCAPES:
        return literal(value)
    return b'"' + _ESCAPE.sub(rb"\\\1", value) + b'"'


def nstring(value: bytes | None) -> bytes:
    """``NIL`` for ``None``, else :func:`string`."""
    return NIL if value is None else string(value)


def remove_linebreaks(value: bytes) -> bytes:
    """Drop CR/LF; a line break followed by anything but SP/TAB/end becomes one space."""
    if b"\r" not in value and b"\n" not in value:
        return value
    return _LINEBREAK.sub(_linebreak_repl, value)


def _linebreak_repl(m: re.Match[bytes]) -> bytes:
    end = m.end()
    s = m.string
    if end >= len(s) or s[end] in (0x20, 0x09):
        return b""
    return b" "


def nstring_nolf(value: bytes | None) -> bytes:
    """:func:`nstring` of the value with its line breaks removed (unfolded header values)."""
    if value is None:
        return NIL
    return string(remove_linebreaks(value))


def for_humans(value: bytes) -> bytes:
    """The text :func:`string_for_humans` sends: white space collapsed and trimmed, NUL→0x80."""
    text = _WSP_RUN.sub(b" ", value).strip(b" ")
    if b"\x00" in text:
        text = text.replace(b"\x00", b"\x80")
    return text


def string_for_humans(value: bytes) -> bytes:
    """Subjects and display names: normalised white space; a literal when anything changed."""
    if not _HUMAN_MODIFY.search(value):
        return b'"' + value + b'"'
    text = for_humans(value)
    if not text:
        return b'""'
    return literal(text)


def nstring_for_humans(value: bytes | None) -> bytes:
    return NIL if value is None else string_for_humans(value)


def astring(value: bytes) -> bytes:
    """An atom when possible (never for empty or NIL, which would read back differently)."""
    if not value or _NOT_ASTRING.search(value) or value.upper() == NIL:
        return string(value)
    return value


def string_list(values: Iterable[bytes]) -> bytes:
    """``("a" "b" …)`` of :func:`string`; ``NIL`` when empty."""
    parts = [string(v) for v in values]
    if not parts:
        return NIL
    return b"(" + b" ".join(parts) + b")"
