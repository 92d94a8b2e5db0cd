"""cote.imapwire: quoted vs literal as Dovecot chooses, checked on fixed cases, by round
trip, and against Dovecot's ENVELOPE for the same values."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cote import imapwire
from cote.storage.message.envelope import envelope
from cote.storage.message.headers import read_header
from tests.message.imapraw import RawImap
from tests.support.dovecot import DovecotOracle


def _read_string(wire: bytes) -> bytes:
    """Parse one IMAP string (quoted or literal) that must span all of ``wire``."""
    if wire.startswith(b'"'):
        assert wire.endswith(b'"') and len(wire) >= 2
        inner = wire[1:-1]
        assert re.fullmatch(rb'(?:[^"\\\r\n\x00\x80-\xff]|\\["\\])*', inner), wire
        return re.sub(rb'\\(["\\])', rb"\1", inner)
    m = re.match(rb"\{(\d+)\}\r\n", wire)
    assert m, wire
    assert len(wire) == m.end() + int(m.group(1))
    return wire[m.end():]


def test_fixed_choices() -> None:
    assert imapwire.string(b"abc") == b'"abc"'
    assert imapwire.string(b'a"b') == b'"a\\"b"'
    assert imapwire.string(b'""""') == b'"\\"\\"\\"\\""'
    assert imapwire.string(b'"""""') == b'{5}\r\n"""""'
    assert imapwire.string(b"caf\xc3\xa9") == b"{5}\r\ncaf\xc3\xa9"
    assert imapwire.string(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert imapwire.nstring(None) == b"NIL"
    assert imapwire.nstring(b"") == b'""'
    assert imapwire.astring(b"INBOX") == b"INBOX"
    assert imapwire.astring(b"nil") == b'"nil"'
    assert imapwire.astring(b"a b") == b'"a b"'
    assert imapwire.astring(b"a]b") == b"a]b"
    assert imapwire.astring(b"") == b'""'
    assert imapwire.nstring_nolf(b"Mon, 1 Jan 2001\r\n   00:00:00") == b'"Mon, 1 Jan 2001   00:00:00"'
    assert imapwire.nstring_nolf(b"a\rb") == b'"a b"'
    assert imapwire.string_for_humans(b"plain subject") == b'"plain subject"'
    assert imapwire.string_for_humans(b"  lead  and trail  ") == b"{14}\r\nlead and trail"
    assert imapwire.string_for_humans(b"abc ") == b"{3}\r\nabc"
    assert imapwire.string_for_humans(b"a\tb") == b"{3}\r\na b"
    assert imapwire.string_for_humans(b"   ") == b'""'
    assert imapwire.string_for_humans(b'say "hi"') == b'{8}\r\nsay "hi"'
    assert imapwire.string_list([]) == b"NIL"
    assert imapwire.string_list([b"en", b"de"]) == b'("en" "de")'


@given(st.binary(max_size=60))
def test_string_round_trips(value: bytes) -> None:
    assert _read_string(imapwire.string(value)) == value


@given(st.binary(max_size=60))
def test_for_humans_round_trips_to_normalised_text(value: bytes) -> None:
    assert _read_string(imapwire.string_for_humans(value)) == imapwire.for_humans(value)


@given(st.binary(max_size=60))
def test_astring_is_an_atom_or_a_string(value: bytes) -> None:
    wire = imapwire.astring(value)
    if wire[:1] in (b'"', b"{"):
        assert _read_string(wire) == value
    else:
        assert wire == value and value.upper() != b"NIL"
        assert not re.search(rb'[\x00-\x20(){%*"\\\x7f-\xff]', wire)


def _values() -> list[bytes]:
    rng = random.Random(7)
    alphabet = b'ab "\\\t\xc3\xa9\xff=?()<>,;:@.'
    out = [b"x", b'a"b', b"a\\\\b", b'"""""', b'""""', b"  lead", b"trail  ", b"a  b",
           b"caf\xe9", b"\xc3\xa9t\xc3\xa9", b"tab\there", b"=?utf-8?q?x?=", b"nil", b"NIL"]
    for _ in range(40):
        out.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 12))))
    return out


@pytest.mark.oracle
def test_envelope_strings_match_dovecot(dovecot: DovecotOracle) -> None:
    client = RawImap(dovecot.ports["imap"], "user1", "pass1")
    client.command(b"SELECT INBOX")
    bad = []
    for value in _values():
        msg = (b"Subject: " + value + b"\r\nMessage-ID: <" + value + b">\r\nFrom: "
               + b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'" <a@b.c>'
               + b"\r\nIn-Reply-To: \r\n  " + value + b"\r\n\r\nbody\r\n")
        uid = client.append(b"INBOX", msg)
        theirs = client.fetch(uid, b"ENVELOPE")[b"ENVELOPE"]
        fields, _, _ = read_header(msg, 0, len(msg))
        mine = envelope(fields)
        if mine != theirs:
            bad.append((value, theirs, mine))
    client.close()
    assert not bad, bad
