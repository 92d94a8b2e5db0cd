"""cote's auth daemon and Dovecot's, fed the same conversations and lookups.

Both run from the same passwd-file (plaintext, SHA512-CRYPT and nologin users) with the same
mechanisms. Replies are compared line by line; only what is random by nature is masked (the
handshake's SPID/CUID/COOKIE, CRAM-MD5's challenge).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

MECHS = "plain login cram-md5"
CONF = f"auth_mechanisms = {MECHS}\nauth_verbose = yes\ndisable_plaintext_auth = yes\n"


@dataclass
class Pair:
    dovecot: DovecotOracle
    cote: CoteServer


def crypt_hash(password: str) -> str:
    out = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", password],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    dc = DovecotOracle(users={"user1": "pass1", "user2": "pä2", "User3": "x", "nolog": "x"},
                       passwd_extra={"nolog": "nologin reason=Try\\ later",
                                     "user2": "quota_rule=*:storage=1G userdb_mail=maildir:~/m"},
                       stored_passwords={"user1": crypt_hash("pass1")},
                       extra_conf=CONF).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="pop3", auth_mechanisms=MECHS, extra_conf=CONF).start()
    try:
        yield Pair(dc, cote)
    finally:
        cote.cleanup()
        dc.cleanup()


class LineClient:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(path)
        self.buf = b""

    def send(self, *fields: str) -> None:
        self.sock.sendall("\t".join(fields).encode() + b"\n")

    def line(self) -> str:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def until(self, word: str) -> list[str]:
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].split("\t", 1)[0] == word:
                return lines

    def close(self) -> None:
        self.sock.close()


def client_handshake(path: str) -> tuple[LineClient, list[str]]:
    c = LineClient(path)
    c.send("VERSION", "1", "2")
    c.send("CPID", "4242")
    lines = c.until("DONE")
    return c, [re.sub(r"^(SPID|CUID|COOKIE)\t.*", r"\1\tX", x) for x in lines]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def converse(path: str, steps: list[tuple[str, ...]], cram: tuple[str, str] | None = None
             ) -> list[str]:
    """Run AUTH steps; for CRAM-MD5, ``cram`` = (user, password) answers the challenge."""
    c, _ = client_handshake(path)
    out = []
    try:
        for step in steps:
            c.send(*step)
            reply = c.line()
            if cram and reply.startswith("CONT"):
                challenge = base64.b64decode(reply.split("\t")[2])
                digest = hmac.new(cram[1].encode(), challenge, hashlib.md5).hexdigest()
                c.send("CONT", reply.split("\t")[1], b64(f"{cram[0]} {digest}".encode()))
                reply = "CONT\t(challenge)\n" + c.line()
            out.append(reply)
    finally:
        c.close()
    return out


def auth_client(p: Pair, which: str) -> str:
    return str(p.dovecot.base_dir / "auth-client") if which == "dovecot" \
        else str(p.cote.socket_path("auth-client"))


def test_handshake_announces_the_same_mechanisms(pair: Pair) -> None:
    theirs = client_handshake(auth_client(pair, "dovecot"))[1]
    ours = client_handshake(auth_client(pair, "cote"))[1]
    assert ours == theirs


AUTH = ("AUTH", "1", "PLAIN", "service=pop3", "secured", "lip=127.0.0.1", "rip=127.0.0.1")
CONVERSATIONS = {
    "plain ok (crypt hash)": [(*AUTH, "resp=" + b64(b"\0user1\0pass1"))],
    "plain wrong password": [(*AUTH, "resp=" + b64(b"\0user1\0nope"))],
    "plain unknown user": [(*AUTH, "resp=" + b64(b"\0ghost\0x"))],
    "plain mixed case and utf-8": [(*AUTH, "resp=" + b64("\0USER2\0pä2".encode()))],
    "plain user with capitals in passwd-file": [(*AUTH, "resp=" + b64(b"\0User3\0x"))],
    "plain nologin": [(*AUTH, "resp=" + b64(b"\0nolog\0x"))],
    "plain without resp then cont": [AUTH, ("CONT", "1", b64(b"\0user1\0pass1"))],
    "login mechanism": [("AUTH", "1", "LOGIN", "service=imap", "secured"),
                        ("CONT", "1", b64(b"user1")), ("CONT", "1", b64(b"pass1"))],
    # disable_plaintext_auth = yes: the daemon still accepts plaintext; logins enforce it.
    "plaintext from an unsecured remote ip": [
        ("AUTH", "1", "PLAIN", "service=imap", "lip=127.0.0.1", "rip=192.0.2.7",
         "resp=" + b64(b"\0user1\0pass1"))],
    "plain wrong password of a user with extra fields": [
        (*AUTH, "resp=" + b64(b"\0user2\0wrong"))],
    "bad base64 in cont": [AUTH, ("CONT", "1", "!!!")],
}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_conversations_match(pair: Pair, name: str) -> None:
    steps = CONVERSATIONS[name]
    theirs = converse(auth_client(pair, "dovecot"), steps)
    ours = converse(auth_client(pair, "cote"), steps)
    assert ours == theirs


def test_cram_md5_needs_a_plaintext_password(pair: Pair) -> None:
    steps = [("AUTH", "1", "CRAM-MD5", "service=imap", "secured")]
    for user, password in (("user2", "pä2"), ("user1", "pass1"), ("user2", "bad")):
        theirs = converse(auth_client(pair, "dovecot"), steps, cram=(user, password))
        ours = converse(auth_client(pair, "cote"), steps, cram=(user, password))
        assert ours == theirs, user


@pytest.mark.parametrize("user", ["user1", "USER2", "nolog", "ghost", "User3"])
def test_userdb_lookups_match(pair: Pair, user: str) -> None:
    answers = []
    for path in (pair.dovecot.base_dir / "auth-master", pair.cote.socket_path("auth-master")):
        c = LineClient(str(path))
        c.send("VERSION", "1", "0")
        assert c.line().startswith("VERSION\t1\t")
        assert c.line().startswith("SPID\t")
        c.send("USER", "7", user, "service=pop3")
        answers.append(c.line())
        c.close()
    theirs, ours = answers
    assert ours == theirs


def test_failure_is_delayed_like_dovecot(pair: Pair) -> None:
    start = time.monotonic()
    converse(auth_client(pair, "cote"), CONVERSATIONS["plain wrong password"])
    assert time.monotonic() - start >= 1.9  # auth_failure_delay = 2 secs
