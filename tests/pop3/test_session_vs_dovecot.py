"""The POP3 TRANSACTION state answers exactly as Dovecot's pop3 does.

Random command sequences (valid and malformed) go to a real Dovecot logged in on a known
maildrop and to :class:`Pop3Session` built from the same messages; every reply, including
streamed RETR/TOP bodies, must be byte-identical. Sequences end by disconnecting without QUIT,
so the maildrop stays the same for the next one (and that deletes nothing: checked too).
"""

from __future__ import annotations

import imaplib
import random
import socket
from collections.abc import Iterator

import pytest

from cote.mailproc.pop3 import wire
from cote.mailproc.pop3.session import Pop3Session, Reply, SendMessage, Update
from tests.support.dovecot import DovecotOracle

MESSAGES = [
    b"Subject: one\r\n\r\nline1\r\n.dot\r\nline3\r\n",
    b"Subject: two\nX: y\n\nb1\nb2\nb3",  # LF line ends, no final newline
    b"From: a@example.com\r\nSubject: three\r\n\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: empty body\r\n\r\n",
    b"Subject: no body separator\r\n",
    b"Subject: bare cr\r\n\r\nx\ry\r\n" + b"z" * 3000 + b"\r\n",
]

ARG_SAMPLES = ["", "0", "1", "2", "3", "6", "7", "01", "1 2", " 1", "1x", "-1", "x",
               "4294967295", "4294967296", "99999999999999999999", "1 0", "1 1", "2 100",
               "3 -1", "3 x", "1 ", "2  3", "5 1", "4 0"]
VERBS = ["STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "CAPA", "LAST",
         "list", "Retr", "FOO", "", "USER", "PASS", "APOP", "STLS", "AUTH"]


def vsize(msg: bytes) -> int:
    return len(msg.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n"))


@pytest.fixture(scope="module")
def maildrop() -> Iterator[tuple[DovecotOracle, list[str]]]:
    with DovecotOracle(users={"popuser": "secret"}) as dc:
        imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        imap.login("popuser", "secret")
        for msg in MESSAGES:
            assert imap.append("INBOX", "", None, msg)[0] == "OK"
        imap.select("INBOX")
        _, (uidv,) = imap.response("UIDVALIDITY")
        imap.logout()
        uidls = [f"{uid:08x}{int(uidv):08x}" for uid in range(1, len(MESSAGES) + 1)]
        yield dc, uidls


class Pop3Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.file.readline()

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        first = self.file.readline()
        if not first.startswith(b"+OK"):
            return first
        verb = line.split(" ", 1)[0].upper()
        multi = verb in ("CAPA", "RETR", "TOP") or (verb in ("LIST", "UIDL") and " " not in line)
        if not multi:
            return first
        out = [first]
        while True:
            line_b = self.file.readline()
            out.append(line_b)
            if line_b == b".\r\n" or not line_b:
                return b"".join(out)

    def close(self) -> None:
        self.sock.close()


def cote_answer(session: Pop3Session, line: str) -> bytes:
    action = session.handle(wire.parse_command(line.encode()))
    if isinstance(action, Reply):
        return action.data
    if isinstance(action, SendMessage):
        enc = wire.MessageEncoder(action.body_lines)
        msg = MESSAGES[action.index]
        # Feed in small uneven chunks: the encoder must not care where chunks split.
        body = b"".join(enc.encode(msg[i:i + 7]) for i in range(0, len(msg), 7))
        tail = enc.finish()
        session.message_sent(action, len(action.status) + enc.sent)
        return action.status + body + tail
    assert isinstance(action, Update)
    raise AssertionError("QUIT is not part of the random sequences")


def random_line(rng: random.Random) -> str:
    verb = rng.choice(VERBS)
    args = rng.choice(ARG_SAMPLES)
    return f"{verb} {args}" if args else verb


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_match_dovecot(maildrop: tuple[DovecotOracle, list[str]],
                                        seed: int) -> None:
    dc, uidls = maildrop
    rng = random.Random(seed)
    client = Pop3Client(dc.ports["pop3"])
    try:
        assert client.command("USER popuser").startswith(b"+OK")
        assert client.command("PASS secret") == b"+OK Logged in.\r\n"
        session = Pop3Session([vsize(m) for m in MESSAGES], uidls)
        for _ in range(40):
            line = random_line(rng)
            assert cote_answer(session, line) == client.command(line), line
    finally:
        client.close()


@pytest.mark.oracle
def test_quit_commits_deletions_and_disconnect_deletes_nothing(
        maildrop: tuple[DovecotOracle, list[str]]) -> None:
    dc, uidls = maildrop
    # The random sequences above DELEted messages and disconnected without QUIT.
    client = Pop3Client(dc.ports["pop3"])
    client.command("USER popuser")
    client.command("PASS secret")
    assert client.command("STAT") == f"+OK {len(MESSAGES)} {sum(map(vsize, MESSAGES))}\r\n".encode()
    session = Pop3Session([vsize(m) for m in MESSAGES], uidls)
    for line in ("DELE 2", "DELE 4"):
        assert cote_answer(session, line) == client.command(line)
    action = session.handle(wire.parse_command(b"QUIT"))
    assert action == Update((1, 3))
    assert session.finish_update(ok=True) == client.command("QUIT")
    client.close()
