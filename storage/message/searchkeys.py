"""Header helpers for SEARCH and SORT: decoded text, base subject, sort addresses, dates.

* ``decode_words`` turns a raw header value into text: RFC 2047 encoded words decoded
  (white space between adjacent encoded words dropped), raw 8-bit text read as UTF-8
  (Latin-1 when it is not), line breaks unfolded.
* ``base_subject`` is RFC 5256's base subject (``Re:``/``Fwd:``/``[blob]`` leaders,
  ``(fwd)`` trailers and ``[fwd: …]`` wrappers removed, white space collapsed);
  ``subject_sort_key`` is its i;unicode-casemap key (``casemap``, RFC 5051).
* ``sort_address`` / ``display_address`` are the SORT FROM/TO/CC keys (RFC 5256: the
  first address's mailbox) and DISPLAYFROM/DISPLAYTO (RFC 5957: its display name, else
  the address), casemapped.
* ``search_text``, ``subject_search_text``, ``address_search_text`` and
  ``header_block_text`` are the strings SEARCH HEADER, SUBJECT, FROM/TO/CC/BCC and TEXT
  match a substring in, built as Dovecot builds them (see each one).
* ``parse_date`` reads an RFC 2822 date leniently into (UTC timestamp, zone offset in
  minutes); None when it is not a date, so SORT falls back to the internal date.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import unicodedata

from cote.storage.message.address import GROUP_END, GROUP_START, NORMAL, parse_addresses
from cote.storage.message.rfc822 import ATEXT

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(rb"(\?=)[ \t\r\n]+(?==\?)")
_WSP = re.compile(r"[ \t\r\n]+")


def _charset_decode(data: bytes, charset: str, unknown: bool = True) -> str:
    charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return _raw_text(data) if unknown else ""


def _raw_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_word(m: re.Match[bytes], unknown: bool = True) -> tuple[bool, str]:
    charset = m.group(1).decode("ascii", "replace")
    enc, text = m.group(2), m.group(3)
    try:
        if enc in (b"b", b"B"):
            raw = base64.b64decode(text + b"=" * (-len(text) % 4))
        else:
            raw = binascii.a2b_qp(text.replace(b"_", b" "))
    except (binascii.Error, ValueError):
        return False, ""
    return True, _charset_decode(raw, charset, unknown)


def decode_words(value: bytes, unknown_charsets: bool = True) -> str:
    """The text of a header value with encoded words decoded and lines unfolded. An encoded
    word in a charset Python does not know is its raw octets, or nothing when
    ``unknown_charsets`` is false (SEARCH, as Dovecot)."""
    value = value.replace(b"\r", b"").replace(b"\n", b"")
    if b"=?" not in value:
        return _raw_text(value)
    value = _BETWEEN_WORDS.sub(rb"\1", value)
    out: list[str] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        ok, text = _decode_word(m, unknown_charsets)
        if not ok:
            continue
        out.append(_raw_text(value[pos:m.start()]))
        out.append(text)
        pos = m.end()
    out.append(_raw_text(value[pos:]))
    return "".join(out)


def search_text(value: bytes) -> str:
    """SEARCH HEADER's text of a value (as ``read_header`` gives it, continuation lines
    joined with LF): unfolded with a TAB that starts a continuation line read as a space,
    encoded words decoded (one in an unknown charset dropped) -- Dovecot's header parser
    and decoder (checked against it: tests/imapd/test_search_vs_dovecot.py)."""
    if b"\n\t" in value:
        value = value.replace(b"\n\t", b"\n ")
    return decode_words(value, unknown_charsets=False)


_LWSP_RUN = re.compile(rb"[ \t\r\n]+")


def subject_search_text(value: bytes) -> str:
    """SEARCH SUBJECT's text: runs of white space (folding included) become one space and
    leading white space goes before the decoding, as Dovecot compresses LWSP for it."""
    return decode_words(_LWSP_RUN.sub(b" ", value).lstrip(b" "), unknown_charsets=False)


_ESCAPED = frozenset(b'"\\\'')


def _maybe_quoted(text: bytes, dots: bool) -> bytes:
    """Dovecot's str_append_maybe_escape: as is when every octet is atext (and '.' unless
    ``dots``), else quoted, with '"', '\\' and "'" escaped."""
    if all(c in ATEXT or (c == 0x2E and not dots) for c in text):
        return text
    if not any(c in _ESCAPED for c in text):
        return b'"' + text + b'"'
    return b'"' + bytes(b for c in text for b in ((0x5C, c) if c in _ESCAPED else (c,))) + b'"'


def _phrase(text: bytes) -> bytes:
    # an encoded word cannot be quoted: Dovecot writes such a phrase as it is
    return text if b"=?" in text else _maybe_quoted(text, True)


def address_search_text(value: bytes) -> str:
    """SEARCH FROM/TO/CC/BCC's text: the addresses parsed (comments gone, missing parts
    filled in as for ENVELOPE) and written back as Dovecot 2.3.19's message_address_write
    does (``<mailbox@domain>``, ``name <@route:mailbox@domain>``, ``group: <a@b>, <c@d>;``
    -- angle brackets even without a name, checked against it), then decoded like any
    header."""
    out: list[bytes] = []
    first = True
    for a in parse_addresses(value):
        if not first:
            out.append(b", ")
        first = False
        if a.kind == GROUP_START:
            out.append(_phrase(a.mailbox) if a.mailbox else b'""')
            out.append(b": ")
            first = True
        elif a.kind == GROUP_END:
            if out and out[-1] == b", ":
                out.pop()
            elif out and out[-1] == b": ":
                out[-1] = b":"
            out.append(b";")
        else:
            if a.name is not None:
                out.append(_phrase(a.name))
            if a.route is not None or a.mailbox or a.domain:
                if a.name:
                    out.append(b" ")
                out.append(b"<")
                if a.route is not None:
                    out.append(a.route + b":")
                out.append(_maybe_quoted(a.mailbox, False) if a.mailbox else b'""')
                if a.domain:
                    out.append(b"@" + a.domain)
                out.append(b">")
    return decode_words(b"".join(out), unknown_charsets=False)


def header_block_text(raw: bytes) -> str:
    """SEARCH TEXT's text of one header block (``raw`` ends before its empty line): each
    field as its name, the colon and the white space after it as they are, then the value
    as HEADER sees it, fields separated by CRLF -- Dovecot's search walks the block as
    one stream that way."""
    out: list[str] = []
    lines: list[bytes] = []

    def flush() -> None:
        if not lines:
            return
        first = lines[0]
        colon = first.find(b":")
        if colon < 0:
            out.append(search_text(b"\n".join(lines)))
            return
        rest = first[colon + 1:]
        value = rest.lstrip(b" \t")
        head = first[:len(first) - len(value)]
        out.append(_raw_text(head) + search_text(b"\n".join([value, *lines[1:]])))

    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines.append(line)
            continue
        flush()
        lines = [line] if line else []
    flush()
    return "\r\n".join(out)


_TRAILER = re.compile(r"(?:[ ]*\(fwd\)[ ]*|[ ]+)$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\][ ]*"
_LEADER = re.compile(r"^(?:" + _BLOB + r")*(?:re|fwd?)[ ]*(?:" + _BLOB + r")?:[ ]*",
                     re.IGNORECASE)
_LEADING_BLOB = re.compile(r"^" + _BLOB)


def base_subject(value: bytes) -> str:
    """RFC 5256 section 2.1 base subject of a raw Subject value."""
    subject = _WSP.sub(" ", decode_words(value)).strip(" ")
    while True:
        # (2) trailing "(fwd)" and white space
        while True:
            cut = _TRAILER.sub("", subject)
            if cut == subject:
                break
            subject = cut
        # (3)-(5) leading subj-leaders and blobs, repeatedly
        while True:
            m = _LEADER.match(subject)
            if m:
                subject = subject[m.end():]
                continue
            m = _LEADING_BLOB.match(subject)
            if m and subject[m.end():]:
                subject = subject[m.end():]
                continue
            break
        # (6) [fwd: ...] wrapper
        low = subject.lower()
        if low.startswith("[fwd:") and subject.endswith("]"):
            subject = subject[5:-1].strip(" ")
            continue
        return subject


def casemap(text: str) -> str:
    """The i;unicode-casemap comparator's key (RFC 5051): titlecase, then canonical
    decomposition; keys compare by code point. Dovecot's SEARCH compares the same keys
    (its normalizer, uni_utf8_to_decomposed_titlecase)."""
    if text.isascii():
        return text.upper()
    if max(text) < _PUA:
        # str.upper() is the simple titlecase mapping except for _UPPER_DIFFERS, which are
        # parked in a private-use plane across upper(): C speed for megabytes of text
        text = text.translate(_PARK).upper().translate(_UNPARK)
        return unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(map(_title1, text)))


def _title1(ch: str) -> str:
    # the simple (one-character) titlecase mapping: "ß" stays "ß", as for Dovecot
    t = ch.title()
    return t if len(t) == 1 else ch


_UPPER_DIFFERS = (
    (0xDF, 0xDF), (0x149, 0x149), (0x1C4, 0x1CC), (0x1F0, 0x1F3), (0x390, 0x390),
    (0x3B0, 0x3B0), (0x587, 0x587), (0x10D0, 0x10FA), (0x10FD, 0x10FF), (0x1E96, 0x1E9A),
    (0x1F50, 0x1F50), (0x1F52, 0x1F52), (0x1F54, 0x1F54), (0x1F56, 0x1F56), (0x1F80, 0x1FAF),
    (0x1FB2, 0x1FB4), (0x1FB6, 0x1FB7), (0x1FBC, 0x1FBC), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FC7),
    (0x1FCC, 0x1FCC), (0x1FD2, 0x1FD3), (0x1FD6, 0x1FD7), (0x1FE2, 0x1FE4), (0x1FE6, 0x1FE7),
    (0x1FF2, 0x1FF4), (0x1FF6, 0x1FF7), (0x1FFC, 0x1FFC), (0xFB00, 0xFB06), (0xFB13, 0xFB17))
"""The code points whose ``str.upper()`` is not their simple titlecase mapping (Python's
Unicode tables; tests/message/test_searchkeys.py recomputes the list)."""
_PUA = "\U000f0000"
_DIFFERS = [c for a, b in _UPPER_DIFFERS for c in range(a, b + 1)]
_PARK = {c: 0xF0000 + i for i, c in enumerate(_DIFFERS)}
_UNPARK = {0xF0000 + i: _title1(chr(c)) for i, c in enumerate(_DIFFERS)}


def subject_sort_key(value: bytes | None) -> str:
    return "" if value is None else casemap(base_subject(value))


def sort_address(value: bytes | None) -> str:
    """SORT FROM/TO/CC: the mailbox of the first address, case-folded."""
    if value is None:
        return ""
    for a in parse_addresses(value):
        if a.kind == NORMAL:
            return casemap(_raw_text(a.mailbox or b""))
    return ""


def display_address(value: bytes | None) -> str:
    """SORT DISPLAYFROM/DISPLAYTO: the decoded display name, else mailbox@domain."""
    if value is None:
        return ""
    for a in parse_addresses(value):
        if a.kind == NORMAL:
            if a.name:
                return casemap(_WSP.sub(" ", decode_words(a.name)).strip(" "))
            return casemap(_raw_text((a.mailbox or b"") + b"@" + (a.domain or b"")))
    return ""


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_ZONES = {"ut": 0, "gmt": 0, "z": 0, "edt": -240, "est": -300, "cdt": -300, "cst": -360,
          "mdt": -360, "mst": -420, "pdt": -420, "pst": -480}
_DATE = re.compile(
    r"^\s*(?:[a-z]+\s*,?\s*)?(\d{1,2})\s*[- ]\s*([a-z]{3})[a-z]*\s*[- ]\s*(\d{2,4})\s+"
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[a-z]+)?", re.IGNORECASE)


def parse_date(value: bytes | None) -> tuple[int, int] | None:
    """(UTC timestamp, zone offset in minutes) of a Date header value, or None."""
    if value is None:
        return None
    text = re.sub(r"\([^)]*\)", " ", value.decode("latin-1"))
    m = _DATE.match(text)
    if not m:
        return None
    day, mon, year = int(m.group(1)), _MONTHS.get(m.group(2).lower()), int(m.group(3))
    if mon is None or not 1 <= day <= 31:
        return None
    if year < 100:
        year += 2000 if year < 50 else 1900
    hour, minute, sec = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
    if hour > 23 or minute > 59 or sec > 60:
        return None
    zone = m.group(7) or "+0000"
    if zone[0] in "+-":
        offset = int(zone[1:3]) * 60 + int(zone[3:5])
        if zone[0] == "-":
            offset = -offset
    else:
        offset = _ZONES.get(zone.lower(), 0)
    try:
        stamp = calendar.timegm((year, mon, day, hour, minute, min(sec, 59), 0, 0, 0))
    except (OverflowError, ValueError):
        return None
    return stamp - offset * 60, offset
