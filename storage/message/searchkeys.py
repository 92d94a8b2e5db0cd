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
* ``parse_date`` reads an RFC 2822 date leniently into (UTC timestamp, zone offset in
  minutes); None when it is not a date, so SORT falls back to the internal date.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import unicodedata

from cote.storage.message.address import NORMAL, parse_addresses

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(rb"(\?=)[ \t\r\n]+(?==\?)")
_WSP = re.compile(r"[ \t\r\n]+")


def _charset_decode(data: bytes, charset: str) -> str:
    charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return _raw_text(data)


def _raw_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_word(m: re.Match[bytes]) -> tuple[bool, str]:
    charset = m.group(1).decode("ascii", "replace")
    enc, text = m.group(2), m.group(3)
    try:
        if enc in (b"b", b"B"):
            raw = base64.b64decode(text + b"=" * (-len(text) % 4))
        else:
            raw = binascii.a2b_qp(text.replace(b"_", b" "))
    except (binascii.Error, ValueError):
        return False, ""
    return True, _charset_decode(raw, charset)


def decode_words(value: bytes) -> str:
    """The text of a header value with encoded words decoded and lines unfolded."""
    value = value.replace(b"\r", b"").replace(b"\n", b"")
    if b"=?" not in value:
        return _raw_text(value)
    value = _BETWEEN_WORDS.sub(rb"\1", value)
    out: list[str] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        ok, text = _decode_word(m)
        if not ok:
            continue
        out.append(_raw_text(value[pos:m.start()]))
        out.append(text)
        pos = m.end()
    out.append(_raw_text(value[pos:]))
    return "".join(out)


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
    decomposition; keys compare by code point."""
    if text.isascii():
        return text.upper()
    return unicodedata.normalize("NFD", "".join(map(_title1, text)))


def _title1(ch: str) -> str:
    # the simple (one-character) titlecase mapping: "ß" stays "ß", as for Dovecot
    t = ch.title()
    return t if len(t) == 1 else ch


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
