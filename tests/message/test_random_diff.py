"""Seeded random differential tests against Dovecot: MIME-shaped garbage messages and
garbage address lists must get the same ENVELOPE/BODYSTRUCTURE/sizes/sections from cote."""

from __future__ import annotations

import pytest

from cote import imapwire
from cote.storage.message.bodystructure import bodystructure
from cote.storage.message.envelope import envelope
from cote.storage.message.headers import read_header
from cote.storage.message.lineends import to_stored
from cote.storage.message.scanner import scan, virtual_size
from cote.storage.message.sections import parse_section, section_content
from tests.message.imapraw import RawImap
from tests.message.randmsg import MessageGenerator
from tests.support.dovecot import DovecotOracle

pytestmark = pytest.mark.oracle

SECTIONS = [b"1.MIME", b"2", b"1.1", b"HEADER.FIELDS (FROM TO)", b"1.HEADER"]


@pytest.fixture(scope="module")
def client(dovecot: DovecotOracle) -> RawImap:
    c = RawImap(dovecot.ports["imap"], "user1", "pass1")
    c.command(b"CREATE random")
    c.command(b"SELECT random")
    return c


@pytest.mark.parametrize("seed", [11, 12])
def test_random_messages_match_dovecot(client: RawImap, seed: int) -> None:
    gen = MessageGenerator(seed)
    items = b"ENVELOPE BODYSTRUCTURE RFC822.SIZE " + b" ".join(
        b"BODY.PEEK[" + s + b"]" for s in SECTIONS)
    bad = []
    for _ in range(120):
        msg = gen.message()
        uid = client.append(b"random", msg)
        theirs = client.fetch(uid, items)
        data = to_stored(msg)  # what Dovecot's maildir holds
        parts = scan(data)
        mine = {b"ENVELOPE": parts[0].envelope, b"BODYSTRUCTURE": bodystructure(parts),
                b"RFC822.SIZE": b"%d" % virtual_size(data)}
        for s in SECTIONS:
            mine[b"BODY[" + s + b"]"] = imapwire.literal(
                section_content(data, parts, parse_section(s)))
        for key, value in mine.items():
            if theirs[key] != value:
                bad.append((msg, key, theirs[key], value))
    assert not bad, bad[:3]


@pytest.mark.parametrize("seed", [21, 22])
def test_random_addresses_match_dovecot(client: RawImap, seed: int) -> None:
    gen = MessageGenerator(seed)
    bad = []
    for _ in range(150):
        msg = b"To: " + gen.address() + b"\r\nCc: " + gen.address() + b"\r\nSubject: s\r\n\r\nx\r\n"
        uid = client.append(b"random", msg)
        theirs = client.fetch(uid, b"ENVELOPE")[b"ENVELOPE"]
        fields, _, _ = read_header(msg, 0, len(msg))
        if envelope(fields) != theirs:
            bad.append((msg, theirs, envelope(fields)))
    assert not bad, bad[:3]
