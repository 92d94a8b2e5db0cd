"""cote's POP3 mail process on a Maildir that Dovecot wrote, compared with Dovecot's pop3.

cote runs as a real process (``python -m cote.mailproc.pop3``, PREAUTH on a socket, dropped to
the mail user like Dovecot's pop3), Dovecot serves the same store. UIDL, LIST, STAT, RETR and
TOP must be byte-identical; after cote's UPDATE, Dovecot must see the expunges and \\Seen
flags; the logout line must match Dovecot's; a dropped connection must delete nothing.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support.dovecot import DovecotOracle
from tests.support.env import mail_user

MESSAGES = [
    b"Subject: one\r\n\r\nline1\r\n.dot\r\nline3\r\n",
    b"Subject: two\nX: y\n\nb1\nb2\nb3",
    b"From: a@example.com\r\nSubject: three\r\n\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: big\r\n\r\n" + b"".join(b"line %05d with some text\r\n" % i for i in range(5000)),
    b"Subject: empty\r\n\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
]
READ_COMMANDS = ["STAT", "LIST", "UIDL", "CAPA"] + \
    [f"RETR {i}" for i in range(1, len(MESSAGES) + 1)] + \
    [f"TOP {i} {n}" for i in range(1, len(MESSAGES) + 1) for n in (0, 1, 3)] + \
    ["LIST 3", "UIDL 2", "RETR 9", "TOP 1", "DELE 2", "STAT", "LIST", "RSET", "STAT", "NOOP"]


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def close(self) -> None:
        # The makefile() object holds the socket open; close both or the peer never sees EOF.
        self.file.close()
        self.sock.close()

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        first = self.line()
        verb = text.split(" ", 1)[0].upper()
        multi = first.startswith(b"+OK") and (
            verb in ("CAPA", "RETR", "TOP") or (verb in ("LIST", "UIDL") and " " not in text))
        out = [first]
        while multi:
            out.append(self.line())
            if out[-1] in (b".\r\n", b""):
                break
        return b"".join(out)


def filled_dovecot() -> DovecotOracle:
    dc = DovecotOracle(users={"popuser": "secret"}).start()
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login("popuser", "secret")
    for msg in MESSAGES:
        assert imap.append("INBOX", "", None, msg)[0] == "OK"
    imap.logout()
    return dc


@pytest.fixture(scope="module")
def store() -> Iterator[DovecotOracle]:
    dc = filled_dovecot()
    yield dc
    dc.cleanup()


@pytest.fixture(scope="module")
def twin() -> Iterator[DovecotOracle]:
    """A second Dovecot with the same messages, to run destructive sequences on."""
    dc = filled_dovecot()
    yield dc
    dc.cleanup()


def pop3_logouts(dc: DovecotOracle) -> list[str]:
    return [x for x in dc.log_path.read_text().splitlines()
            if "pop3(popuser)" in x and "Disconnected:" in x]


def next_logout(dc: DovecotOracle, seen: int) -> str:
    """The first pop3 logout line Dovecot writes after ``seen`` earlier ones."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = pop3_logouts(dc)
        if len(lines) > seen:
            return lines[seen]
        time.sleep(0.05)
    raise AssertionError("Dovecot logged no new pop3 logout")


def dovecot_pop3(dc: DovecotOracle) -> Client:
    c = Client(socket.create_connection(("127.0.0.1", dc.ports["pop3"]), timeout=10))
    c.line()
    c.command("USER popuser")
    assert c.command("PASS secret") == b"+OK Logged in.\r\n"
    return c


def cote_pop3(dc: DovecotOracle) -> tuple[Client, subprocess.Popen[bytes]]:
    ours, theirs = socket.socketpair()
    vmail = mail_user()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cote.mailproc.pop3", "-u", "popuser",
         "--mail", f"maildir:{dc.user_maildir('popuser')}",
         "--uid", str(vmail.pw_uid), "--gid", str(vmail.pw_gid)],
        stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
    theirs.close()
    ours.settimeout(10)
    c = Client(ours)
    assert c.line() == b"+OK Logged in.\r\n"
    return c, proc


@pytest.mark.oracle
def test_reading_commands_answer_like_dovecot(store: DovecotOracle) -> None:
    theirs = dovecot_pop3(store)
    ours, proc = cote_pop3(store)
    for command in READ_COMMANDS:
        assert ours.command(command) == theirs.command(command), command
    theirs.close()
    ours.close()  # no QUIT: nothing may be deleted
    proc.wait(10)
    again = dovecot_pop3(store)
    assert again.command("STAT").startswith(f"+OK {len(MESSAGES)} ".encode())
    again.close()


UPDATE_SEQUENCE = ["RETR 1", "TOP 3 1", "DELE 2", "QUIT"]


@pytest.mark.oracle
def test_update_expunges_and_sets_seen_as_dovecot_sees_it(store: DovecotOracle,
                                                          twin: DovecotOracle) -> None:
    before = dovecot_pop3(store)
    uidls_before = before.command("UIDL").split(b"\r\n")[1:-2]
    before.close()
    ours, proc = cote_pop3(store)
    seen = len(pop3_logouts(twin))
    reference = dovecot_pop3(twin)
    for command in UPDATE_SEQUENCE:
        assert ours.command(command) == reference.command(command), command
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    ours_line = [x for x in err.decode().splitlines() if "Disconnected:" in x][-1]
    theirs_line = next_logout(twin, seen)
    assert ours_line.split("Disconnected: ", 1)[1] == theirs_line.split("Disconnected: ", 1)[1]

    after = dovecot_pop3(store)
    remaining = after.command("UIDL").split(b"\r\n")[1:-2]
    after.close()
    # Message 2 is gone; the others keep their UIDLs (renumbered).
    expected = [u.split(b" ")[1] for i, u in enumerate(uidls_before) if i != 1]
    assert [u.split(b" ")[1] for u in remaining] == expected
    imap = imaplib.IMAP4("127.0.0.1", store.ports["imap"])
    imap.login("popuser", "secret")
    imap.select("INBOX")
    _, data = imap.fetch("1:*", "(UID FLAGS)")
    imap.logout()
    flags = {int(re.search(rb"UID (\d+)", d).group(1)): d for d in data}
    assert sorted(flags) == [1, 3, 4, 5, 6]
    assert b"\\Seen" in flags[1] and b"\\Seen" not in flags[3]


@pytest.mark.oracle
def test_dropped_connection_logs_like_dovecot(store: DovecotOracle, twin: DovecotOracle) -> None:
    ours, proc = cote_pop3(store)
    seen = len(pop3_logouts(twin))
    reference = dovecot_pop3(twin)
    for command in ("LIST", "RETR 3"):
        assert ours.command(command) == reference.command(command)
    ours.close()
    reference.close()
    _, err = proc.communicate(timeout=10)
    ours_line = [x for x in err.decode().splitlines() if "Disconnected:" in x][-1]
    theirs_line = next_logout(twin, seen)
    assert ours_line.split("Disconnected: ", 1)[1] == theirs_line.split("Disconnected: ", 1)[1]


@pytest.mark.oracle
def test_migrated_uidls_from_the_uidlist_win(twin: DovecotOracle) -> None:
    """A migration tool's P fields in dovecot-uidlist: both servers must show them."""
    uidlist = twin.user_maildir("popuser") / "dovecot-uidlist"
    lines = uidlist.read_text().splitlines()
    present = [int(line.split(" ", 1)[0]) for line in lines[1:]]
    migrated = {present[0]: "migrated-uidl-one", present[-1]: "0123456789abcdef"}
    out = [lines[0]]
    for line in lines[1:]:
        uid = int(line.split(" ", 1)[0])
        if uid in migrated:
            head, _, name = line.partition(" :")
            line = f"{head} P{migrated[uid]} :{name}"
        out.append(line)
    uidlist.write_text("\n".join(out) + "\n")
    theirs = dovecot_pop3(twin)
    ours, proc = cote_pop3(twin)
    their_uidls = theirs.command("UIDL")
    assert ours.command("UIDL") == their_uidls
    assert b" migrated-uidl-one\r\n" in their_uidls
    theirs.close()
    ours.close()
    proc.wait(10)


def read_all(c: Client) -> bytes:
    out = []
    try:
        while line := c.line():
            out.append(line)
    except ConnectionResetError:
        out.append(b"<reset>")
    return b"".join(out)


@pytest.mark.oracle
@pytest.mark.parametrize("burst", [
    b"foo\r\n" * 19 + b"STAT\r\n" + b"Bar\r\n" * 20 + b"NOOP\r\n",  # never 21 in a row
    b"RETR 99\r\nfoo\r\nLIST x\r\n" * 7,  # the 21st failed command in a row
    b"NOOP " + b"x" * 2041 + b"\r\nSTAT\r\n",  # 2048 bytes with the CRLF: still fine
    b"NOOP \xc3\xa9\r\n\xc3\xa9t\xc3\xa9\r\nnoop\r\n",  # upper-casing leaves UTF-8 alone
], ids=["19-then-ok", "21-bad", "2048", "utf8"])
def test_bad_input_answers_like_dovecot(store: DovecotOracle, burst: bytes) -> None:
    """More than 20 failed commands in a row end the session with Dovecot's reply and
    logout reason; a 2048-byte line is still a line."""
    seen = len(pop3_logouts(store))
    theirs = dovecot_pop3(store)
    ours, proc = cote_pop3(store)
    for c in (theirs, ours):
        c.sock.sendall(burst)
        c.sock.shutdown(socket.SHUT_WR)
    their_bytes, our_bytes = read_all(theirs), read_all(ours)
    theirs.close()
    ours.close()
    _, err = proc.communicate(timeout=10)
    assert our_bytes == their_bytes
    assert logout_reason(err.decode()) == logout_reason(next_logout(store, seen))


@pytest.mark.oracle
def test_overlong_line_hangs_up_like_dovecot(store: DovecotOracle) -> None:
    """A line whose LF does not fit Dovecot's 2048-byte buffer: -ERR and hang up. (Dovecot's
    reply is usually lost to the TCP reset its close causes, so only cote's is compared.)"""
    seen = len(pop3_logouts(store))
    theirs = dovecot_pop3(store)
    ours, proc = cote_pop3(store)
    line = b"NOOP " + b"x" * 2042 + b"\r\n"  # 2049 bytes
    for c in (theirs, ours):
        c.sock.sendall(b"STAT\r\n" + line)
        with contextlib.suppress(OSError):  # the server may have hung up already
            c.sock.shutdown(socket.SHUT_WR)
    read_all(theirs)
    our_bytes = read_all(ours)
    theirs.close()
    ours.close()
    _, err = proc.communicate(timeout=10)
    assert our_bytes.endswith(b"\r\n-ERR Input line too long.\r\n")
    assert logout_reason(err.decode()) == logout_reason(next_logout(store, seen)) == \
        "Input line too long"


def logout_reason(log: str) -> str:
    line = [x for x in log.splitlines() if "Disconnected:" in x][-1]
    return line.split("Disconnected: ", 1)[1].split(" top=")[0]
