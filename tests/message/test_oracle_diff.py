"""Differential test: every corpus message APPENDed to Dovecot, then cote's answers for the
file Dovecot stored must equal Dovecot's FETCH answers octet for octet.

Dovecot's maildir save rewrites CRLF as LF, so cote scans the stored file (what cote
reads in production); sizes are CRLF-normalised either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote import imapwire
from cote.storage.message.binary import BinaryParseError, UnknownCTE, binary_content, binary_size
from cote.storage.message.bodystructure import body, bodystructure
from cote.storage.message.lineends import to_stored
from cote.storage.message.scanner import Part, scan, scan_file, virtual_size
from cote.storage.message.sections import parse_section, section_content
from tests.message.corpusgen import corpus
from tests.message.imapraw import RawImap, fetch_items
from tests.support.dovecot import DovecotOracle

pytestmark = pytest.mark.oracle

SECTIONS = [
    b"", b"HEADER", b"TEXT", b"1", b"2", b"3", b"1.MIME", b"2.MIME", b"3.MIME", b"4.MIME",
    b"1.1", b"1.2", b"2.1", b"1.1.1", b"1.HEADER", b"1.TEXT", b"2.HEADER", b"2.TEXT",
    b"1.2.HEADER", b"1.2.TEXT", b"1.2.MIME", b"1.1.MIME", b"2.1.MIME", b"1.2.1",
    b"HEADER.FIELDS (FROM SUBJECT CONTENT-TYPE X-NONE)", b"HEADER.FIELDS.NOT (FROM RECEIVED)",
    b"HEADER.FIELDS (MESSAGE-ID TO)", b"1.HEADER.FIELDS (SUBJECT FROM)",
    b"2.HEADER.FIELDS.NOT (SUBJECT)", b"1.2.HEADER.FIELDS (SUBJECT)",
]
PARTIALS = [(b"", (0, 10)), (b"TEXT", (5, 100)), (b"", (100000, 5)), (b"1", (1, 3)),
            (b"HEADER.FIELDS (FROM)", (2, 4)), (b"2", (3, 1000000))]
BINARY_SECTIONS = [b"", b"TEXT", b"1", b"2", b"3", b"1.1", b"1.2", b"2.1", b"4", b"5", b"6"]

# Dovecot 2.3.19 reports a BINARY.SIZE that differs from the BINARY[] it sends for these
# (see docs/differences.md): cote reports the size of what it sends.
DOVECOT_BINARY_SIZE_BUGS = {
    ("020-nested-multipart", b"1"),
    ("045-rfc822-attachment-base64", b""), ("045-rfc822-attachment-base64", b"TEXT"),
    ("045-rfc822-attachment-base64", b"1"),
}

CORPUS = corpus()


def _stored(maildir: Path, uid: int) -> Path:
    for line in (maildir / "dovecot-uidlist").read_bytes().split(b"\n")[1:]:
        if line.startswith(b"%d " % uid):
            base = line.split(b":", 1)[1].decode()
            for sub in ("cur", "new"):
                found = list((maildir / sub).glob(base + "*"))
                if found:
                    return found[0]
    raise AssertionError(f"UID {uid} not in dovecot-uidlist")


def _fetch_one(client: RawImap, uid: int, item: bytes) -> bytes:
    """One FETCH item's raw value, or b"NO <code>" for a NO completion."""
    untagged, done = client.command(b"UID FETCH %d (%b)" % (uid, item))
    if b" OK " not in done:
        m = re.search(rb"NO \[([A-Z-]+)\]", done)
        return b"NO " + (m.group(1) if m else done)
    for resp in untagged:
        m = re.match(rb"\* \d+ FETCH \(", resp)
        if m:
            for key, value in fetch_items(resp, m.end()).items():
                if key.startswith((b"BINARY", b"BODY[")):
                    return value
    raise AssertionError(f"no {item!r} in {untagged!r}")


@pytest.fixture(scope="module")
def answers(dovecot: DovecotOracle) -> Iterator[dict[str, tuple[Path, dict[bytes, bytes]]]]:
    """name -> (file Dovecot stored, {item: Dovecot's raw answer})."""
    client = RawImap(dovecot.ports["imap"], "user1", "pass1")
    client.command(b"SELECT INBOX")
    out: dict[str, tuple[Path, dict[bytes, bytes]]] = {}
    maildir = dovecot.user_maildir("user1")
    for name, data in CORPUS:
        uid = client.append(b"INBOX", data)
        items = [b"ENVELOPE", b"BODYSTRUCTURE", b"BODY", b"RFC822.SIZE"]
        items += [b"BODY.PEEK[" + s + b"]" for s in SECTIONS]
        items += [b"BODY.PEEK[" + s + b"]<%d.%d>" % p for s, p in PARTIALS]
        got = client.fetch(uid, b" ".join(items))
        result = {k: v for k, v in got.items() if k not in (b"UID", b"FLAGS")}
        for s in BINARY_SECTIONS:
            # one command each: Dovecot answers NO for the whole FETCH on a bad part
            result[b"BINARY[" + s + b"]"] = _fetch_one(client, uid, b"BINARY.PEEK[" + s + b"]")
            result[b"BINARY.SIZE[" + s + b"]"] = _fetch_one(client, uid,
                                                             b"BINARY.SIZE[" + s + b"]")
        out[name] = (_stored(maildir, uid), result)
    client.close()
    yield out


def _cote_answers(name: str, data: bytes, parts: tuple[Part, ...]) -> dict[bytes, bytes]:
    mine = {
        b"ENVELOPE": parts[0].envelope or b"NIL",
        b"BODYSTRUCTURE": bodystructure(parts),
        b"BODY": body(parts),
        b"RFC822.SIZE": b"%d" % virtual_size(data),
    }
    for s in SECTIONS:
        # Dovecot echoes the field names upper-cased
        mine[b"BODY[" + s.upper() + b"]"] = imapwire.literal(
            section_content(data, parts, parse_section(s)))
    for s, p in PARTIALS:
        mine[b"BODY[" + s.upper() + b"]<%d>" % p[0]] = imapwire.literal(
            section_content(data, parts, parse_section(s), p))
    for s in BINARY_SECTIONS:
        sec = parse_section(s)
        try:
            bc = binary_content(data, parts, sec)
            mine[b"BINARY[" + s + b"]"] = (b"~" if bc.literal8 else b"") + imapwire.literal(
                bc.data)
        except UnknownCTE:
            mine[b"BINARY[" + s + b"]"] = b"NO UNKNOWN-CTE"
        except BinaryParseError:
            mine[b"BINARY[" + s + b"]"] = b"NO PARSE"
        try:
            mine[b"BINARY.SIZE[" + s + b"]"] = b"%d" % binary_size(data, parts, sec)
        except UnknownCTE:
            mine[b"BINARY.SIZE[" + s + b"]"] = b"NO UNKNOWN-CTE"
        except BinaryParseError:
            mine[b"BINARY.SIZE[" + s + b"]"] = b"NO PARSE"
    return mine


@pytest.mark.parametrize("name", [n for n, _ in CORPUS])
def test_fetch_answers_equal_dovecot(name: str, answers: dict[str, tuple[Path, dict[bytes, bytes]]]
                                     ) -> None:
    path, theirs = answers[name]
    data = path.read_bytes()
    original = dict(CORPUS)[name]
    assert data == to_stored(original)  # cote saves line ends as Dovecot does
    if b"\r" not in original.replace(b"\r\n", b""):
        # the CRLF original and the LF file Dovecot stored answer alike
        orig_parts = scan(original)
        assert bodystructure(orig_parts) == bodystructure(scan(data))
        assert orig_parts[0].envelope == scan(data)[0].envelope
        assert virtual_size(original) == virtual_size(data)
    parts = scan(data)
    assert scan_file(str(path)) == parts  # mmap path gives the same scan
    mine = _cote_answers(name, data, parts)
    assert set(theirs) == set(mine), set(theirs) ^ set(mine)
    mismatches = []
    for key, value in theirs.items():
        if key.startswith(b"BINARY.SIZE[") and (name, key[12:-1]) in DOVECOT_BINARY_SIZE_BUGS:
            content = mine[b"BINARY[" + key[12:]]
            assert content.endswith(b"}\r\n" + content.split(b"}\r\n", 1)[1])
            assert int(mine[key]) == len(content.split(b"}\r\n", 1)[1])
            assert value != mine[key]  # still Dovecot's bug: revisit if this fails
            continue
        if mine[key] != value:
            mismatches.append((key, value[:300], mine[key][:300]))
    assert not mismatches, mismatches


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 62
