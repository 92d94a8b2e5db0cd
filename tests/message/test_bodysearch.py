"""SEARCH BODY/TEXT's scanner (storage/message/bodysearch.py): its fast paths must answer as
decoding every text part and comparing casemap keys would (the reference below, Dovecot's
rule), including at the 1 MB window edges and around characters that map to ASCII."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cote.storage.message import bodysearch
from cote.storage.message.bodysearch import Needle, body_matches, headers_match, text_matches
from cote.storage.message.scanner import scan
from cote.storage.message.searchkeys import casemap


def _msg(body: bytes, ctype: bytes = b"text/plain; charset=utf-8", cte: bytes = b"8bit") -> bytes:
    return (b"Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: " + ctype
            + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body)


def _body(data: bytes, needle: str) -> bool:
    return body_matches(data, scan(data), Needle(needle))


def _reference(body: bytes, needle: str) -> bool:
    return casemap(needle) in casemap(body.decode("utf-8", "replace"))


@pytest.mark.parametrize(("body", "needle", "expected"), [
    (b"plain Zephyrine text\r\n", "zephyrINE", True),
    (b"plain text\r\n", "zephyrine", False),
    (b"Stra\xc3\x9fe\r\n", "strasse", False),  # "ß" has no one-letter titlecase
    (b"Stra\xc3\x9fe\r\n", "STRASSE", False),
    (b"5 \xe2\x84\xaaelvin\r\n", "kelvin", True),  # the Kelvin sign decomposes to "K"
    (b"\xc4\xb1stanbul \xc5\xbfun\r\n", "istanbul sun", True),  # dotless i, long s
    (b"\xef\xac\x81nal\r\n", "final", False),  # the "fi" ligature stays one
    (b"caf\xc3\xa9 cr\xc3\xa8me\r\n", "CAFÉ", True),
    (b"caf\xc3\xa9\r\n", "cafe", True),  # é decomposes: E and a combining accent
    (b"caf\xc3\xa9s\r\n", "cafes", False),  # ... which then stands between E and S
    (b"line one\r\nline two\r\n", "one\r\nline", True),
    (b"line one\nline two\n", "one\r\nline", True),  # LF-only file: CRLF as sent
])
def test_body_keys(body: bytes, needle: str, expected: bool) -> None:
    assert _body(_msg(body), needle) is expected
    assert _reference(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), needle) is expected


def test_encodings_and_skipped_parts() -> None:
    b64 = base64.encodebytes("Grüße aus Köln".encode()).replace(b"\n", b"\r\n")
    assert _body(_msg(b64, cte=b"base64"), "köln")
    assert _body(_msg(b"zeph=\r\nyrine =C3=A9\r\n", cte=b"quoted-printable"), "zephyrine é")
    latin = _msg(b"un caf\xe9\r\n", b"text/plain; charset=iso-8859-1")
    assert _body(latin, "café") and _body(latin, "cafe") and not _body(latin, "cafez")
    attachment = _msg(b"zephyrine\r\n", b"application/octet-stream")
    assert not _body(attachment, "zephyrine")
    assert _body(attachment, "")  # an empty needle matches every message
    status = _msg(b"Status: 5.1.1 zephyrine\r\n", b"message/delivery-status")
    assert _body(status, "zephyrine")


def test_needle_across_the_window_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodysearch, "_WINDOW", 64)
    for at in range(50, 70):
        body = b"x" * at + b"ZEPHYRINE" + b"y" * 100 + b"\r\n"
        assert _body(_msg(body), "zephyrine"), at
        body = b"\xc3\xa9" * (at // 2) + b"zephyrin\xc3\xa9" + b"y" * 100 + b"\r\n"
        assert _body(_msg(body), "zephyrine"), at


def test_text_searches_every_header_block() -> None:
    data = (b"Subject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
            b"\r\n--b\r\nContent-Type: text/plain\r\nX-Note: partword\r\n\r\nbody\r\n--b\r\n"
            b"Content-Type: message/rfc822\r\n\r\nSubject: =?utf-8?q?inn=C3=A9r?=\r\n\r\nx\r\n"
            b"--b--\r\n")
    parts = scan(data)
    assert headers_match(data, parts, Needle("x-note: partword"))
    assert headers_match(data, parts, Needle("innér"))
    assert not headers_match(data, parts, Needle("body"))
    assert text_matches(data, parts, Needle("body"))
    assert not body_matches(data, parts, Needle("partword"))


_TEXT = st.text(alphabet=st.sampled_from(list("abcesSKß ﬁéè;\u037e\u212a\u0130\u0131\u017f\n")),
                max_size=60)


@settings(max_examples=400, deadline=None)
@given(body=_TEXT, needle=st.text(alphabet=st.sampled_from(list("abceksSiß;é ")), min_size=1,
                                  max_size=4))
def test_matches_the_decode_and_fold_reference(body: str, needle: str) -> None:
    raw = body.encode().replace(b"\n", b"\r\n") + b"\r\n"
    assert _body(_msg(raw), needle) is _reference(raw, needle)
