"""LMTP through cote's master and lmtp process into Maildir, compared with Dovecot's LMTP.

cote's own auth daemon answers the userdb lookups from the same passwd-file as Dovecot's.
The same transaction goes to both servers; replies must match byte for byte, and the files each stores must be identical except
for the Received header's id and date. Dovecot then reads cote's deliveries over IMAP.
"""

from __future__ import annotations

import imaplib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

SESSION = re.compile(rb"(<\S+> )([A-Za-z0-9+/]{22})((?::T\d+)?(?::R\d+)?) Saved")
MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: user1@example.com\r\nSubject: hi\r\n"
           b"Message-ID: <m1@example.com>\r\n\r\nline one\r\n..dotted\r\n" + b"x" * 5000 + b"\r\n")


@dataclass
class Setup:
    dovecot: DovecotOracle
    port: int
    socket_path: Path
    log: Path


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    dc = DovecotOracle(users={"user1": "x", "user2": "x"}).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp")
    try:
        cote.start()
        yield Setup(dc, cote.ports["lmtp"], cote.socket_path("lmtp"), cote.log_path)
    finally:
        cote.cleanup()
        dc.cleanup()


def converse(sock: socket.socket, lines: list[bytes]) -> bytes:
    """Send a pipelined transaction and read replies until the QUIT's 221."""
    sock.settimeout(10)
    out = bytearray(sock.recv(4096))
    sock.sendall(b"".join(lines))
    while not out.rstrip().endswith(b"Bye"):
        data = sock.recv(65536)
        if not data:
            break
        out += data
    sock.close()
    return bytes(out)


def transaction(rcpts: list[str], body: bytes = MESSAGE) -> list[bytes]:
    stuffed = b"\r\n".join(b"." + x if x.startswith(b".") else x for x in body.split(b"\r\n"))
    return [b"LHLO client.example\r\nMAIL FROM:<alice@example.com>\r\n",
            *[f"RCPT TO:<{r}>\r\n".encode() for r in rcpts],
            b"DATA\r\n", stuffed + b".\r\n", b"QUIT\r\n"]


def newest_files(dc: DovecotOracle, user: str, count: int) -> list[bytes]:
    """The last ``count`` deliveries, oldest first. (Dovecot files a multi-recipient
    delivery in cur/ as one hard-linked file; cote writes each to new/: see
    docs/differences.md. The content is what must agree.)"""
    maildir = dc.user_maildir(user)
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
    files.sort(key=lambda p: p.stat().st_mtime_ns)
    return [f.read_bytes() for f in files[-count:]]


def normalise(stored: bytes) -> bytes:
    """Session ids and dates differ between any two deliveries."""
    stored = re.sub(rb"\tid [A-Za-z0-9+/]{22}", b"\tid ID", stored)
    return re.sub(rb"(\tfor <[^>]*>;|\(envelope-from <[^>]*>\);) .*\n", rb"\1 DATE\n", stored)


@pytest.mark.parametrize("rcpts", [["user1"], ["user1", "nosuch", "user2+tag"]],
                         ids=["one recipient", "several recipients"])
def test_replies_and_stored_messages_match_dovecot(setup: Setup, rcpts: list[str]) -> None:
    theirs = converse(socket.create_connection(("127.0.0.1", setup.dovecot.ports["lmtp"])),
                      transaction(rcpts))
    ours = converse(socket.create_connection(("127.0.0.1", setup.port)), transaction(rcpts))
    host = theirs.split(b" ", 2)[1]
    assert SESSION.sub(rb"\1ID\3 Saved", ours) == SESSION.sub(rb"\1ID\3 Saved", theirs)
    assert host in ours.split(b"\r\n", 1)[0]
    users = [r.split("+")[0] for r in rcpts if r != "nosuch"]
    for user in users:
        theirs_file, ours_file = newest_files(setup.dovecot, user, 2)
        assert normalise(ours_file) == normalise(theirs_file)
        assert (b"\nDelivered-To: " in ours_file) == (len(users) == 1)


def test_delivery_over_the_unix_socket_is_seen_by_dovecot_imap(setup: Setup) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(setup.socket_path))
    body = b"Subject: via unix socket\r\n\r\nhello\r\n"
    replies = converse(sock, transaction(["user1"], body))
    assert re.search(rb"250 2.0.0 <user1> \S+ Saved\r\n221 2.0.0 Bye", replies), replies
    imap = imaplib.IMAP4("127.0.0.1", setup.dovecot.ports["imap"])
    imap.login("user1", "x")
    _, data = imap.select("INBOX")
    _, fetched = imap.fetch(data[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] UID)")
    imap.logout()
    assert b"Subject: via unix socket" in fetched[0][1]


def test_delivery_log_lines(setup: Setup) -> None:
    # Its own delivery: under xdist the other tests of this module may run elsewhere.
    converse(socket.create_connection(("127.0.0.1", setup.port)), transaction(["user1"]))
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = setup.log.read_text()
        if "msgid=<m1@example.com>: saved mail to INBOX" in text:
            break
        time.sleep(0.05)
    assert re.search(r"lmtp\(user1\)<\d+><[A-Za-z0-9+/]{22}>: Info: msgid=<m1@example.com>: "
                     r"saved mail to INBOX", text), text[-2000:]
    assert re.search(r"lmtp\(\d+\): Info: Connect from 127\.0\.0\.1", text)
