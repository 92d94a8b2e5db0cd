"""lmtp_user_concurrency_limit against Dovecot: concurrent LMTP clients (each served by its own
lmtp process, counted through anvil) get the same replies from both servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

CONF = "lmtp_user_concurrency_limit = 1\n"


@dataclass
class Pair:
    dovecot: DovecotOracle
    cote: CoteServer


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    dc = DovecotOracle(users={"user1": "x", "user2": "x"}, extra_conf=CONF).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp", extra_conf=CONF)
    try:
        cote.start()
        yield Pair(dc, cote)
    finally:
        cote.cleanup()
        dc.cleanup()


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.line()  # greeting

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def command(self, text: str) -> bytes:
        """Send one command, return its last reply line."""
        self.sock.sendall(text.encode() + b"\r\n")
        while True:
            line = self.line()
            if line[3:4] != b"-":
                return line

    def close(self) -> None:
        self.sock.close()


def scenario(port: int) -> list[bytes]:
    a, b = Client(port), Client(port)
    try:
        out = [a.command("LHLO a"), a.command("MAIL FROM:<s@x>"), a.command("RCPT TO:<user1>")]
        time.sleep(0.2)  # A's registration reaches anvil
        out += [b.command("LHLO b"), b.command("MAIL FROM:<s@x>"),
                b.command("RCPT TO:<user1>"), b.command("RCPT TO:<user2>")]
        out += [a.command("DATA"), a.command("Subject: c\r\n\r\nbody\r\n.")]
        time.sleep(0.2)  # the end of A's delivery reaches anvil
        out += [b.command("RCPT TO:<user1>"), b.command("DATA"),
                b.command("Subject: c\r\n\r\nbody\r\n."), b.command("QUIT"), a.command("QUIT")]
    finally:
        a.close()
        b.close()
    return [line.split(b" ")[0] + b" " + b" ".join(line.split(b" ")[1:3])
            if b"Saved" in line else line for line in out]


def test_too_many_concurrent_deliveries_for_user_as_dovecot(pair: Pair) -> None:
    theirs = scenario(pair.dovecot.ports["lmtp"])
    ours = scenario(pair.cote.ports["lmtp"])
    assert ours[2:] == theirs[2:]  # LHLO names the host
    assert b"451 4.3.0 <user1> Too many concurrent deliveries for user" in theirs
    assert theirs.count(b"250 2.1.5 OK") == 3


def rset_scenario(port: int) -> list[bytes]:
    a, b = Client(port), Client(port)
    try:
        out = [a.command("LHLO a"), a.command("MAIL FROM:<s@x>"), a.command("RCPT TO:<user1>")]
        time.sleep(0.2)
        out += [b.command("LHLO b"), b.command("MAIL FROM:<s@x>"), b.command("RCPT TO:<user1>")]
        out += [a.command("RSET")]
        time.sleep(0.2)  # the abandoned recipient is let go
        out += [b.command("RCPT TO:<user1>"), b.command("QUIT"), a.command("QUIT")]
    finally:
        a.close()
        b.close()
    return out


def test_rset_releases_the_recipient_as_dovecot(pair: Pair) -> None:
    theirs = rset_scenario(pair.dovecot.ports["lmtp"])
    ours = rset_scenario(pair.cote.ports["lmtp"])
    assert ours[1:3] + ours[4:] == theirs[1:3] + theirs[4:]  # LHLO names the host
    assert theirs[-3] == b"250 2.1.5 OK"
