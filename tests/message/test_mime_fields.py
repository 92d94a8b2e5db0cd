"""Content-* header values (types, parameters, RFC 2231, dispositions, languages,
encodings, duplicates, broken syntax) give Dovecot's BODYSTRUCTURE, field by field."""

from __future__ import annotations

import pytest

from cote.storage.message.bodystructure import bodystructure
from cote.storage.message.scanner import scan
from tests.message.imapraw import RawImap
from tests.support.dovecot import DovecotOracle

pytestmark = pytest.mark.oracle

CONTENT_TYPES = [
    b"TEXT/Plain; CHARSET=UTF-8", b"text/plain; charset=\"us-ascii\"", b"text", b"text/", b"/plain",
    b"", b"text/plain;", b"text/plain; foo", b"text/plain; foo=", b"text/plain; a=b; a=c",
    b"text/plain (comment); charset=x", b"text / plain ; charset = \"x y\"",
    b"text/plain; name*=utf-8''%C3%A9.txt", b"text/plain; name*0*=utf-8''a; name*1*=%C3%A9; name*2=c",
    b"text/plain; name*1=b; name*0=a", b"text/plain; name*0=a; name*2=c", b"text/plain; name=x; name*=y",
    b"text/plain; n=\"a\\\"b\"", b"text/plain; n=\"\xc3\xa9\"", b"x-unknown/x-thing", b"text/plain; charset=",
    b"text/plain; =x", b"multipart/mixed", b"message/rfc822", b"message/global",
    b"text/plain;charset=a;;b=c", b"text/plain; a=\"unterminated", b"text/plain\r\n ; charset=x\r\n\t; y=z",
    b"\"text\"/\"plain\"", b"te(x)xt/plain", b"text/plain; charset=\"utf-8\"(c)", b"text/plain; a=b c=d",
    b"text/plain; a=b;c", b"image/png; name*0=\"long\"; name*1=\"name.png\"; title*=x",
    b"image/png; title*=x; b*=y", b"image/png; a*0=1; a*1=2; b*=y; c*=z", b"image/png; a*0*=1; a*1=2",
    b"image/png; a*0=1; a*1*=2", b"image/png; a*0=1; a*0=2", b"image/png; a*x=1", b"image/png; a**=1",
    b"image/png; z=1; a*0=1; y=2", b"image/png; A*0=1; a*1=2", b"image/png; a*=1; a*0=2",
    b"text;charset=x", b"text x", b"text (c)", b"text/plain/x", b"text/plain x; charset=y",
    b"text/(c)plain", b"image", b"image; name=x", b"(c)", b"text/plain; name=a/b.txt; c=d",
    b"text/plain; b==_x_=; c=d", b"text/plain; b=\"x\"y; c=d", b"text/pl\xc3\xa9in; c=d",
    b"text/html (x", b"text/html; charset=x (y", b"plain(  ", b"multipart", b"application; name=x",
    b"text/plain; @;charset; boundary=b1]", b"text/plain; bc<junk; boundary=b2",
]
OTHER_FIELDS = [
    b"Content-Disposition: attachment; filename*0=a; filename*1=b",
    b"Content-Disposition: inline\r\nContent-Disposition: attachment; filename=x",
    b"Content-Disposition: inline; a=b\r\nContent-Disposition: attachment",
    b"Content-Disposition: inline\r\nContent-Disposition: <  [",
    b"Content-Disposition: inline; a=b\r\nContent-Disposition: attachment; c=d@",
    b"Content-Disposition: b1,; a=b\r\nContent-Disposition: attachment",
    b"Content-Disposition: x\r\nContent-Disposition: y; a=",
    b"Content-Disposition: inline (x", b"Content-Disposition: (x\\", b"Content-Disposition: x@y",
    b"Content-Language: en, de", b"Content-Language: en-US (c), de", b"Content-Language: \"en\"",
    b"Content-Language: en de", b"Content-Language: ,en", b"Content-Language: en,,de",
    b"Content-Language: en (x", b"Content-Language: en, de (x", b"Content-Language: en\xe9, de",
    b"Content-Language:\r\nContent-Language: de", b"Content-Transfer-Encoding: BASE64 (c)",
    b"Content-Transfer-Encoding: x-uu/x", b"Content-Transfer-Encoding: base64 (x",
    b"Content-Transfer-Encoding:\r\nContent-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: bad/x\r\nContent-Transfer-Encoding: base64",
    b"Content-ID:\r\nContent-ID: <x>", b"Content-ID: <1>\r\nContent-ID: <2>",
    b"Content-Location: a\r\n b", b"Content-MD5: m1\r\nContent-MD5: m2",
    b"Content-Description: =?utf-8?q?x?=\r\nContent-Description: d2",
]


def _messages() -> list[bytes]:
    out = [b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: " + ct + b"\r\n\r\nbody\r\n"
           for ct in CONTENT_TYPES]
    out += [b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n" + f + b"\r\n\r\nbody\r\n"
            for f in OTHER_FIELDS]
    out += [b"From: a@b\r\n" + f + b"\r\n\r\nbody\r\n" for f in OTHER_FIELDS[:6]]  # not MIME
    return out


def test_mime_fields_match_dovecot(dovecot: DovecotOracle) -> None:
    client = RawImap(dovecot.ports["imap"], "user1", "pass1")
    client.command(b"CREATE fields")
    client.command(b"SELECT fields")
    bad = []
    for msg in _messages():
        uid = client.append(b"fields", msg)
        theirs = client.fetch(uid, b"BODYSTRUCTURE")[b"BODYSTRUCTURE"]
        mine = bodystructure(scan(msg))
        if mine != theirs:
            bad.append((msg, theirs, mine))
    client.close()
    assert not bad, bad[:5]
