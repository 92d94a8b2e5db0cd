"""SEARCH/SORT header helpers: decoded words, RFC 5256 base subject, sort addresses, dates;
the base subject order is checked against Dovecot's SORT (SUBJECT)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cote.storage.message import searchkeys
from cote.storage.message.searchkeys import (
    base_subject,
    casemap,
    decode_words,
    display_address,
    parse_date,
    sort_address,
    subject_sort_key,
)
from cote.storage.message.summary import summarize
from tests.message.imapraw import RawImap
from tests.support.dovecot import DovecotOracle


def test_decode_words() -> None:
    assert decode_words(b"=?utf-8?q?Gr=C3=BC=C3=9Fe?= and =?utf-8?b?w6nDqA==?=") == "Grüße and éè"
    assert decode_words(b"=?iso-8859-1?q?a?= =?iso-8859-1?q?b?=") == "ab"
    assert decode_words(b"caf\xc3\xa9") == "café"
    assert decode_words(b"caf\xe9") == "café"
    assert decode_words(b"=?x-unknown?q?abc?=") == "abc"
    assert decode_words(b"fold\r\n ed") == "fold ed"
    assert decode_words(b"=?utf-8?q?broken") == "=?utf-8?q?broken"


@pytest.mark.parametrize(("raw", "base"), [
    (b"Re: hello", "hello"),
    (b"RE: Fwd: [list] Re: hello (fwd)", "hello"),
    (b"[fwd: hello]", "hello"),
    (b"Fw: [fwd: Re: hi (fwd)]", "hi"),
    (b"[only blob]", "[only blob]"),
    (b"re:   spaced    out  ", "spaced out"),
    (b"=?utf-8?q?Re=3A_caf=C3=A9?=", "café"),
    (b"Reply: not a leader", "Reply: not a leader"),
    (b"", ""),
])
def test_base_subject(raw: bytes, base: str) -> None:
    assert base_subject(raw) == base


def test_addresses_and_dates() -> None:
    assert sort_address(b"Joe <joe@x.org>, b@c") == "JOE"
    assert sort_address(b"group: a@b;") == "A"
    assert sort_address(None) == ""
    assert display_address(b"=?utf-8?q?J=C3=B6rg?= <j@x>") == "JO\u0308RG"
    assert display_address(b"j@x") == "J@X"
    assert parse_date(b"Mon, 7 Feb 1994 21:52:25 -0800") == (760686745, -480)
    assert parse_date(b"7 Feb 94 21:52 GMT") == (760657920, 0)
    assert parse_date(b"not a date") is None
    assert parse_date(None) is None


@pytest.mark.oracle
def test_subject_order_matches_dovecot_sort(dovecot: DovecotOracle) -> None:
    subjects = [b"Re: banana", b"apple", b"Fwd: [x] cherry (fwd)", b"[fwd: Apple pie]",
                b"=?utf-8?q?=C3=A9clair?=", b"re: re: date", b"Banana split", b""]
    client = RawImap(dovecot.ports["imap"], "user1", "pass1")
    client.command(b"CREATE sorttest")
    client.command(b"SELECT sorttest")
    for i, s in enumerate(subjects):
        client.append(b"sorttest", b"Subject: " + s + b"\r\nMessage-ID: <%d@x>\r\n\r\nx\r\n" % i)
    untagged, _ = client.command(b"UID SORT (SUBJECT) UTF-8 ALL")
    theirs = [int(x) for x in untagged[0].split()[2:]]
    mine = sorted(range(1, len(subjects) + 1),
                  key=lambda uid: (subject_sort_key(subjects[uid - 1]), uid))
    client.close()
    assert mine == theirs


SORT_MESSAGES = [
    b"From: Zed <zed@x>\r\nTo: b@x\r\nDate: Mon, 1 Jan 2001 10:00:00 +0100\r\n\r\nx",
    b"From: \"Alice Q\" <BOB@x>\r\nTo: A@x\r\nDate: Mon, 1 Jan 2001 09:30:00 +0000\r\n\r\nx",
    b"From: =?utf-8?q?=C3=89mile?= <emile@x>\r\nTo: c@x\r\nCc: z@z\r\n"
    b"Date: 31 Dec 2000 23:00 -0500\r\n\r\nx",
    b"From: grp: m@x;\r\nDate: Tue, 2 Jan 2001 00:00:01 GMT\r\n\r\nx",
    b"From: aaron@x\r\nTo: \r\nDate: Tue, 2 Jan 2001 00:00:02 GMT\r\n\r\nx",
    b"To: Q <q@x>\r\nCc: (c) y@y\r\nDate: Tue, 2 Jan 2001 00:00:00 GMT\r\n\r\nx",
    b"From: \xc3\x9fig <s@x>\r\nTo: \"\xc3\xa9\" <e@x>\r\nDate: Tue, 2 Jan 2001 00:00:03 GMT\r\n\r\nx",
]


@pytest.mark.oracle
def test_sort_keys_order_like_dovecot(dovecot: DovecotOracle) -> None:
    client = RawImap(dovecot.ports["imap"], "user1", "pass1")
    client.command(b"CREATE sortkeys")
    client.command(b"SELECT sortkeys")
    for m in SORT_MESSAGES:
        client.append(b"sortkeys", m)
    keys = [summarize(m)[1].sort for m in SORT_MESSAGES]
    fields = {b"FROM": "from_", b"TO": "to", b"CC": "cc", b"DATE": "sent",
              b"DISPLAYFROM": "display_from", b"DISPLAYTO": "display_to"}
    for crit, attr in fields.items():
        untagged, _ = client.command(b"UID SORT (" + crit + b") UTF-8 ALL")
        theirs = [int(x) for x in untagged[0].split()[2:]]
        mine = sorted(range(1, len(SORT_MESSAGES) + 1),
                      key=lambda uid: (getattr(keys[uid - 1], attr), uid))
        assert mine == theirs, crit
    client.close()


def test_upper_differs_table_is_this_pythons() -> None:
    """casemap's fast path relies on the list of characters whose str.upper() is not their
    simple titlecase: recomputed from this Python's Unicode tables."""
    differs = [c for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000
               and chr(c).upper() != searchkeys._title1(chr(c))]
    assert differs == searchkeys._DIFFERS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_casemap_is_titlecase_then_nfd(text: str) -> None:
    assert casemap(text) == unicodedata.normalize(
        "NFD", "".join(searchkeys._title1(ch) for ch in text))
