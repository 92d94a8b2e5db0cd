"""Address lists (From, To, Cc, …) parsed as Dovecot parses them for ENVELOPE and SORT.

The parser is lenient the way Dovecot's is, and its recoveries show in ENVELOPE, so they are
reproduced: a broken angle address gets the domain ``SYNTAX_ERROR``, a missing mailbox or
domain becomes ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``, an empty list element becomes an
empty invalid address, a lone comment after an addr-spec becomes the display name, a word
followed by more words (``Name a@b``) is a display name, and parsing stops at the first
element it cannot place. Groups become a start marker (mailbox = group name, host NIL) and
an end marker (all NIL), as in RFC 3501.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from cote import imapwire
from cote.storage.message.rfc822 import Cursor

MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"
SYNTAX_ERROR = b"SYNTAX_ERROR"
INVALID_ROUTE = b"INVALID_ROUTE"

NORMAL, GROUP_START, GROUP_END = 0, 1, 2


class Address(NamedTuple):
    name: bytes | None
    route: bytes | None
    mailbox: bytes | None
    domain: bytes | None
    kind: int = NORMAL


class _Parser:
    __slots__ = ("c", "domain", "mailbox", "name", "out", "route")

    def __init__(self, value: bytes) -> None:
        self.c = Cursor(value)
        self.out: list[Address] = []
        self._reset()

    def _reset(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.domain: bytes | None = None

    def _add(self, kind: int = NORMAL) -> None:
        self.out.append(Address(self.name, self.route, self.mailbox, self.domain, kind))
        self._reset()

    def _peek_is(self, ch: int) -> bool:
        c = self.c
        return c.pos < c.end and c.data[c.pos] == ch

    # -- grammar ----------------------------------------------------------------------
    def parse_list(self) -> None:
        c = self.c
        if c.skip_lwsp() <= 0:
            return
        while True:
            if self.parse_address() == 0:
                break
            if not self._peek_is(0x2C):  # ,
                break
            c.pos += 1
            ret = c.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self._add()
                break

    def parse_address(self) -> int:
        start = self.c.pos
        ret = self.parse_group()
        if ret < 0:
            self.c.pos = start
            ret = self.parse_mailbox()
        return ret

    def parse_group(self) -> int:
        c = self.c
        text = bytearray()
        if not self._peek_is(0x3A) and (  # ":" alone starts a group with an empty name
                c.parse_phrase(text) <= 0 or not self._peek_is(0x3A)):
            return -1
        c.pos += 1
        ret = c.skip_lwsp()
        self.mailbox = bytes(text)
        self._add(GROUP_START)
        if ret > 0 and not self._peek_is(0x3B):  # ;
            while True:
                self.parse_mailbox()
                if not self._peek_is(0x2C):
                    break
                c.pos += 1
                if c.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if not self._peek_is(0x3B):
                ret = -1
            else:
                c.pos += 1
                ret = c.skip_lwsp()
        self._add(GROUP_END)
        return 0 if ret == 0 else 1

    def parse_mailbox(self) -> int:
        start = self.c.pos
        ret = self.parse_name_addr()
        if ret < 0:
            self.c.pos = start
            ret = self.parse_addr_spec()
        self._add()
        return ret

    def parse_name_addr(self) -> int:
        c = self.c
        text = bytearray()
        if not self._peek_is(0x3C) and (  # <
                c.parse_phrase(text) <= 0 or not self._peek_is(0x3C)):
            return -1
        self.name = bytes(text) if text else None
        if self.parse_angle_addr() < 0:
            self.domain = SYNTAX_ERROR
        return 1 if c.pos < c.end else 0

    def parse_angle_addr(self) -> int:
        c = self.c
        c.pos += 1
        if c.skip_lwsp() <= 0:
            return -1
        if self._peek_is(0x40):  # @ route
            if self.parse_route() <= 0 or not self._peek_is(0x3A):
                self.route = INVALID_ROUTE  # and the address is still read
                if c.pos >= c.end:
                    return -1
            else:
                c.pos += 1
                if c.skip_lwsp() <= 0:
                    return -1
        if self._peek_is(0x3E):  # <>
            c.pos += 1
            return c.skip_lwsp()
        if self.parse_addr_spec(in_angle=True) < 0:
            return -1
        if not self._peek_is(0x3E):
            return -1
        c.pos += 1
        return c.skip_lwsp()

    def parse_route(self) -> int:
        c = self.c
        text = bytearray()
        while True:
            text.append(0x40)
            c.pos += 1
            ret = c.parse_domain(text)
            if ret <= 0:
                self.route = bytes(text)
                return ret
            while self._peek_is(0x2C):
                c.pos += 1
                ret = c.skip_lwsp()
                if ret <= 0:
                    return ret
            if not self._peek_is(0x40):
                break
            text.append(0x2C)
        self.route = bytes(text)
        return 1

    def parse_addr_spec(self, in_angle: bool = False) -> int:
        c = self.c
        c.last_comment = b""
        quoted = self._peek_is(0x22)
        text = bytearray()
        if quoted:
            ret = c.parse_quoted_string(text)
        else:
            ret = c.parse_local_part(text)
        local_ok = ret >= 0
        if local_ok:
            self.mailbox = bytes(text)
        ret2 = -2
        if ret != 0 and self._peek_is(0x40):  # @
            c.pos += 1
            dom = bytearray()
            ret2 = c.parse_domain(dom)
            if ret2 >= 0:
                self.domain = bytes(dom)
            if ret2 <= 0:
                ret = ret2
        if c.last_comment:
            if self.name is None:
                self.name = c.last_comment
        elif ret2 == -2 and not in_angle:
            # "user" alone is a mailbox; "user more words" is a display name. (Dovecot
            # keeps the white space after a local part ending in "." as well.)
            text += b"  " if c.dot_space else b" "
            before = len(text)
            c.parse_phrase(text)
            if len(text) != before:
                self.mailbox = None
                self.name = bytes(text)
            elif quoted and local_ok:
                # a quoted string without "@domain" is a display name
                self.mailbox = None
                self.name = bytes(text[:before - 1])
            else:
                self.domain = b""
            if local_ok:
                ret = 0 if c.pos >= c.end else 1
        return ret


_ATOM = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff-]+"
_DOT_ATOM = _ATOM + rb"(?:\." + _ATOM + rb")*"
# The common shapes, parsed without the general machinery (same results by construction):
# "local@domain" and "Word Word <local@domain>", with plain spaces only.
_PLAIN_ADDR = re.compile(rb"[ \t]*(" + _DOT_ATOM + rb")@(" + _DOT_ATOM + rb")[ \t]*")
_NAMED_ADDR = re.compile(rb"[ \t]*((?:" + _ATOM + rb"[ \t]+)*" + _ATOM + rb")[ \t]*<("
                         + _DOT_ATOM + rb")@(" + _DOT_ATOM + rb")>[ \t]*")
_SPACES = re.compile(rb"[ \t]+")
# and a list of '"Quoted Name" <local@domain>', the shape most mailers write
_QUOTED_ITEM = re.compile(rb'[ \t\n]*"([^"\\\r\n]*)"[ \t\n]*<(' + _DOT_ATOM + rb")@("
                          + _DOT_ATOM + rb")>[ \t\n]*(,|\Z)")


def _quoted_list(value: bytes) -> list[Address] | None:
    out: list[Address] = []
    pos, end = 0, len(value)
    while True:
        m = _QUOTED_ITEM.match(value, pos)
        if m is None:
            return None
        out.append(Address(m.group(1) or None, None, m.group(2), m.group(3)))
        pos = m.end()
        if not m.group(4):
            return out
        if pos == end:
            return None  # a trailing comma: the general parser's business


def parse_addresses(value: bytes) -> list[Address]:
    """All addresses of a header value, with Dovecot's fill-ins for missing parts."""
    m = _PLAIN_ADDR.fullmatch(value)
    if m:
        return [Address(None, None, m.group(1), m.group(2))]
    m = _NAMED_ADDR.fullmatch(value)
    if m:
        return [Address(_SPACES.sub(b" ", m.group(1)), None, m.group(2), m.group(3))]
    if value.lstrip(b" \t\n")[:1] == b'"':
        quoted = _quoted_list(value)
        if quoted is not None:
            return quoted
    return parse_addresses_full(value)


def parse_addresses_full(value: bytes) -> list[Address]:
    """:func:`parse_addresses` without the fast paths for common shapes."""
    parser = _Parser(value)
    parser.parse_list()
    out = parser.out
    for i, addr in enumerate(out):
        if addr.kind == NORMAL and (addr.mailbox is None or not addr.domain):
            # an empty quoted mailbox ("") stays; an empty domain does not
            out[i] = addr._replace(
                mailbox=MISSING_MAILBOX if addr.mailbox is None else addr.mailbox,
                domain=addr.domain or MISSING_DOMAIN)
    return out


def imap_address_list(addresses: list[Address]) -> bytes:
    """The RFC 3501 address list: ``((name adl mailbox host)…)`` or ``NIL``."""
    if not addresses:
        return imapwire.NIL
    parts = [b"("]
    for a in addresses:
        if a.kind == GROUP_START:
            parts.append(b"(NIL NIL " + imapwire.nstring(a.mailbox) + b" NIL)")
        elif a.kind == GROUP_END:
            parts.append(b"(NIL NIL NIL NIL)")
        else:
            parts.append(b"(" + imapwire.nstring_for_humans(a.name) + b" "
                         + imapwire.nstring(a.route) + b" " + imapwire.nstring(a.mailbox)
                         + b" " + imapwire.nstring(a.domain) + b")")
    parts.append(b")")
    return b"".join(parts)
