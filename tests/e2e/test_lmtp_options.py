"""LMTP options against Dovecot with the same settings: lmtp_save_to_detail_mailbox and
lmtp_hdr_delivery_address = original (ORCPT). Replies and stored files must agree."""

from __future__ import annotations

import imaplib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.test_lmtp_delivery import SESSION, converse, normalise
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

CONF = """\
lmtp_save_to_detail_mailbox = yes
lmtp_hdr_delivery_address = original
lda_original_recipient_header = X-Original-To
hostname = mx.options.example
"""


@dataclass
class Pair:
    dovecot: DovecotOracle
    cote: CoteServer


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    dc = DovecotOracle(users={"user1": "x"}, extra_conf=CONF).start()
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login("user1", "x")
    imap.create("Lists")
    imap.logout()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp", extra_conf=CONF)
    try:
        cote.start()
        yield Pair(dc, cote)
    finally:
        cote.cleanup()
        dc.cleanup()


def newest(dc: DovecotOracle, folder: str, count: int) -> list[bytes]:
    base = dc.user_maildir("user1") / folder if folder else dc.user_maildir("user1")
    files = sorted([*(base / "new").iterdir(), *(base / "cur").iterdir()],
                   key=lambda p: p.stat().st_mtime_ns)
    return [f.read_bytes() for f in files[-count:]]


@pytest.mark.parametrize(("rcpt", "folder"), [
    ("<user1+Lists>", ".Lists"),
    ("<user1+nosuch>", ""),
    ("<user1+Lists> ORCPT=rfc822;list-owner@example.com", ".Lists"),
    ("<user1> ORCPT=rfc822;alias@example.com", ""),
])
def test_detail_mailbox_and_original_recipient_match_dovecot(pair: Pair, rcpt: str,
                                                             folder: str) -> None:
    lines = [b"LHLO c\r\nMAIL FROM:<s@example.com>\r\n", f"RCPT TO:{rcpt}\r\n".encode(),
             b"DATA\r\n", b"Subject: opts\r\n\r\nbody\r\n.\r\n", b"QUIT\r\n"]
    theirs = converse(socket.create_connection(("127.0.0.1", pair.dovecot.ports["lmtp"])), lines)
    ours = converse(socket.create_connection(("127.0.0.1", pair.cote.ports["lmtp"])), lines)
    mask = rb"\1ID\3 Saved"
    host = theirs.split(b" ", 2)[1]
    assert SESSION.sub(mask, ours).replace(ours.split(b" ", 2)[1], host) == SESSION.sub(mask, theirs)
    theirs_file, ours_file = newest(pair.dovecot, folder, 2)
    assert normalise(ours_file) == normalise(theirs_file)


@pytest.mark.parametrize("rcpt", ["<user1>", "<user1> ORCPT=rfc822;orcpt@example.com"],
                         ids=["from the header", "ORCPT wins"])
def test_original_recipient_header_and_hostname_match_dovecot(pair: Pair, rcpt: str) -> None:
    """lda_original_recipient_header: Dovecot 2.3 takes the original recipient from it for
    Sieve only; the trace headers still follow ORCPT (none: no Delivered-To with ``original``).
    ``hostname`` is the name in the greeting and in the Received header."""
    body = (b"X-Original-To: Alias Name <alias@example.com>, other@example.com\r\n"
            b"Subject: orig\r\n\r\nbody\r\n.\r\n")
    lines = [b"LHLO c\r\nMAIL FROM:<s@example.com>\r\n", f"RCPT TO:{rcpt}\r\n".encode(),
             b"DATA\r\n", body, b"QUIT\r\n"]
    theirs = converse(socket.create_connection(("127.0.0.1", pair.dovecot.ports["lmtp"])), lines)
    ours = converse(socket.create_connection(("127.0.0.1", pair.cote.ports["lmtp"])), lines)
    assert theirs.startswith(b"220 mx.options.example ")
    mask = rb"\1ID\3 Saved"
    assert SESSION.sub(mask, ours) == SESSION.sub(mask, theirs)
    theirs_file, ours_file = newest(pair.dovecot, "", 2)
    assert b"by mx.options.example with LMTP" in theirs_file
    assert normalise(ours_file) == normalise(theirs_file)
