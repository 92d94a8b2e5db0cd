"""MIME header values: Content-Type, Content-Disposition, Content-Language, encoding, RFC 2231.

Parsed with Dovecot's leniency, because the results appear verbatim in BODYSTRUCTURE:
a Content-Type must be ``type[/subtype]`` followed by ``;`` or the end (otherwise type and
subtype are empty and the parameters are dropped; ``type (unterminated`` keeps the type);
a parameter is ``key=value`` with a token or quoted-string value, and a broken one is
dropped, parsing resuming one octet further at the next ``;``; RFC 2231 continuations
(``name*0``, ``name*1*``…) are joined when their indexes are complete and left alone when
not, charset/language prefixes are kept encoded; an unterminated comment after a token
drops what it ends (a parameter, a disposition, a language tag, an encoding).
"""

from __future__ import annotations

from cote.storage.message.rfc822 import ATEXT, MIME_TOKEN, Cursor

Params = tuple[bytes, ...]  # flattened key, value, key, value …


class _Broken(Exception):
    """An unterminated comment after a token: Dovecot drops what it was parsing."""

    def __init__(self, token: bytes) -> None:
        super().__init__("unterminated comment")
        self.token = token


def _token(c: Cursor) -> bytes:
    """A MIME token (may be empty), then white space skipped."""
    data, end = c.data, c.end
    start = pos = c.pos
    while pos < end and data[pos] in MIME_TOKEN:
        pos += 1
    c.pos = pos
    tok = data[start:pos]
    if c.skip_lwsp() < 0:
        raise _Broken(tok)
    return tok


def _token_ret(c: Cursor) -> tuple[int, bytes]:
    """A MIME token and 0 if it ran to the end, else the white-space skip's result."""
    data, end = c.data, c.end
    start = pos = c.pos
    while pos < end and data[pos] in MIME_TOKEN:
        pos += 1
    c.pos = pos
    return (0 if pos >= end else c.skip_lwsp()), bytes(data[start:pos])


def _one_param(c: Cursor) -> tuple[bytes, bytes] | None:
    """``";" key "=" value`` at the cursor, or None where Dovecot reports an error."""
    data = c.data
    if data[c.pos] != 0x3B:  # ;
        return None
    c.pos += 1
    if c.skip_lwsp() <= 0:
        return None
    ret, key = _token_ret(c)
    if ret <= 0:
        return None
    if c.pos >= c.end or data[c.pos] != 0x3D:  # =
        return None
    c.pos += 1
    value = bytearray()
    ret = c.skip_lwsp()
    if ret > 0:
        if data[c.pos] == 0x22:
            ret = c.parse_quoted_string(value)
        elif data[c.pos] == 0x3D:
            # name==?utf-8?…?= : an unquoted value starting with "=" runs to LWSP or ;
            pos = c.pos
            while pos < c.end and data[pos] not in b"; \t\r\n":
                pos += 1
            value += data[c.pos:pos]
            c.pos = pos
        else:
            ret, token = _token_ret(c)
            value += token
    if ret < 0:
        return None
    return key, bytes(value)


def parse_params(c: Cursor) -> Params:
    """``*(";" key "=" value)`` from the cursor, with RFC 2231 merging. Like Dovecot, a
    broken parameter is dropped and parsing resumes one octet further at the next ";"."""
    plain: list[bytes] = []
    ext: list[tuple[bytes, int, bool, bytes, int]] = []  # key, idx, extended, value, order
    idx = 0
    while c.pos < c.end:
        param = _one_param(c)
        if param is None:
            if c.pos >= c.end:
                break
            c.pos += 1
            continue
        key, value = param
        star = key.find(b"*")
        if star < 0:
            plain += (key, value)
            continue
        # key*  key*N  key*N*  (a bare key* keeps the index of the previous one: Dovecot
        # reuses its record)
        p = star
        if p + 1 < len(key):
            p += 1
            idx = 0
            while p < len(key) and 0x30 <= key[p] <= 0x39:
                idx = (idx * 10 + key[p] - 0x30) & 0xFFFFFFFF
                p += 1
        extended = p < len(key) and key[p] == 0x2A
        if extended:
            p += 1
        if p != len(key):
            plain += (key, value)
            continue
        ext.append((key[:star], idx, extended, value, len(ext)))
    if ext:
        plain += _merge_2231(ext)
    return tuple(plain)


def _merge_2231(ext: list[tuple[bytes, int, bool, bytes, int]]) -> list[bytes]:
    ext.sort(key=lambda e: (e[0].lower(), e[1], e[4]))
    out: list[bytes] = []
    i = 0
    n = len(ext)
    while i < n:
        lname = ext[i][0].lower()
        j = i
        ok = True
        have_ext = False
        while j < n and ext[j][0].lower() == lname:
            if ext[j][1] != j - i:
                ok = False
            have_ext = have_ext or ext[j][2]
            j += 1
        if not ok:
            for k in range(i, j):
                key, idx, extended, value, _ = ext[k]
                out += (key + b"*%d" % idx + (b"*" if extended else b""), value)
        else:
            joined = b"" if ext[i][2] or not have_ext else b"''"
            joined += b"".join(e[3] for e in ext[i:j])
            out += (ext[i][0] + b"*" if have_ext else ext[i][0], joined)
        i = j
    return out


def parse_content_type(value: bytes) -> tuple[bytes, bytes, Params]:
    """(type, subtype, params) as written; ("", "", ()) when the value is not type[/sub]."""
    c = Cursor(value)
    if c.skip_lwsp() <= 0:
        return b"", b"", ()
    try:
        ctype = _token(c)
    except _Broken as e:
        # "type (unterminated": Dovecot keeps the type, without subtype or parameters
        return e.token, b"", ()
    try:
        if not ctype:
            return b"", b"", ()
        subtype = b""
        if c.pos < c.end and value[c.pos] == 0x2F:  # /
            c.pos += 1
            if c.skip_lwsp() <= 0:
                return b"", b"", ()
            subtype = _token(c)
            if not subtype:
                return b"", b"", ()
        elif c.pos < c.end:
            return b"", b"", ()
    except _Broken:
        return b"", b"", ()
    if c.pos < c.end and value[c.pos] != 0x3B:
        return b"", b"", ()
    return ctype, subtype, parse_params(c)


def parse_disposition(value: bytes) -> tuple[bytes | None, Params]:
    """(disposition type, params); (None, ()) when it cannot be read at all."""
    c = Cursor(value)
    if c.skip_lwsp() < 0:
        return b"", ()  # nothing left to read: an empty disposition type
    try:
        disp = _token(c)
    except _Broken:
        return None, ()
    return disp, parse_params(c)


def parse_encoding(value: bytes) -> bytes | None:
    """The transfer encoding token, or None when the value is not exactly one token."""
    c = Cursor(value)
    if c.skip_lwsp() < 0:
        return None
    try:
        tok = _token(c)
    except _Broken:
        return None
    if not tok or c.pos < c.end:
        return None
    return tok


def parse_language(value: bytes) -> tuple[bytes, ...]:
    """Content-Language tags (atoms separated by commas); parsing stops at anything else,
    and a tag followed by an unterminated comment is dropped."""
    c = Cursor(value)
    if c.skip_lwsp() <= 0:
        return ()
    langs: list[bytes] = []
    while True:
        out = bytearray()
        if c.parse_atom(out, ATEXT) < 0:
            break
        langs.append(bytes(out))
        if c.pos >= c.end or value[c.pos] != 0x2C:
            break
        c.pos += 1
        if c.skip_lwsp() <= 0:
            break
    return tuple(langs)
