"""POP3 and IMAP on one mailbox at once, through one cote master serving both.

An IMAP session sits SELECTed (polling with NOOP, or in IDLE) while a POP3 session RETRs and
DELEs and QUITs: IMAP must see EXPUNGE for exactly the deleted messages, \\Seen on the
RETRieved one, and the others' UIDs and flags unchanged. A POP3 session that began before
IMAP expunged sees its login-time maildrop and answers ``-ERR Message N expunged.`` (Dovecot's
text) for a message gone since, and its QUIT still deletes what it marked. And
``pop3_lock_session`` in the same stack: refused while held, free after QUIT, a dropped
connection, or SIGKILL of the mail process.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import re
import signal
import socket
from collections.abc import Iterator

import pytest

from tests.support.cote import CoteServer
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

USER, PASSWORD = "both", "secret"


def message(i: int) -> bytes:
    return b"Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n" % (i, i, i)


@contextlib.contextmanager
def cote_server(extra_conf: str = "") -> Iterator[CoteServer]:
    """A cote master serving IMAP and POP3 for USER on a fresh Maildir store."""
    root = server_dir("pop3imap")
    vmail = mail_user()
    (root / "mail").mkdir()
    chown_tree(root / "mail", vmail.pw_uid, vmail.pw_gid)
    passwd = root / "users"
    passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{vmail.pw_uid}:{vmail.pw_gid}::"
                      f"{root}/home/{USER}::\n")
    cote = CoteServer(mail_location=f"maildir:{root}/mail/%u", passwd_file=passwd,
                      protocols="imap pop3", extra_conf=extra_conf).start()
    try:
        yield cote
    finally:
        cote.stop()
        cote.cleanup()
        remove_dir(root)


@pytest.fixture(scope="module")
def server() -> Iterator[CoteServer]:
    with cote_server() as cote:
        yield cote


def imap_login(cote: CoteServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", cote.ports["imap"])
    imap.login(USER, PASSWORD)
    return imap


def pop3_login(cote: CoteServer) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", cote.ports["pop3"], timeout=20)
    pop.user(USER)
    pop.pass_(PASSWORD)
    return pop


def fill(cote: CoteServer, count: int) -> list[int]:
    """Empty INBOX, then ``count`` fresh messages; returns their UIDs."""
    imap = imap_login(cote)
    _, exists = imap.select("INBOX")
    if int(exists[0]):
        imap.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
        imap.expunge()
    for i in range(count):
        imap.append("INBOX", "(\\Flagged)" if i == 2 else "", None, message(i))
    imap.select("INBOX")
    uids = uid_flags(imap)
    imap.logout()
    return sorted(uids)


def uid_flags(imap: imaplib.IMAP4) -> dict[int, set[str]]:
    _, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    out: dict[int, set[str]] = {}
    for item in data:
        if not isinstance(item, bytes):
            continue
        m = re.search(rb"UID (\d+)", item)
        f = re.search(rb"FLAGS \(([^)]*)\)", item)
        if m is None:
            continue  # an unsolicited flag update (another session changed flags)
        assert f, item
        out[int(m.group(1))] = set(f.group(1).decode().split())
    return out


def expunged_seqs(responses: list[bytes]) -> list[int]:
    return [int(m.group(1)) for r in responses if (m := re.match(rb"\* (\d+) EXPUNGE", r))]


def apply_expunges(uids: list[int], seqs: list[int]) -> list[int]:
    """The UIDs left after untagged EXPUNGEs (each renumbers the ones after it)."""
    left = list(uids)
    for seq in seqs:
        del left[seq - 1]
    return left


def test_pop3_deletes_seen_by_a_polling_imap_session(server: CoteServer) -> None:
    uids = fill(server, 6)
    imap = imap_login(server)
    imap.select("INBOX")
    before = uid_flags(imap)
    imap.response("EXPUNGE")  # none so far
    pop = pop3_login(server)
    assert pop.stat()[0] == 6
    _, lines, _ = pop.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == message(0)
    pop.dele(2)
    pop.dele(4)
    assert imap.noop()[0] == "OK"  # nothing yet: POP3 changes nothing before QUIT
    assert uid_flags(imap) == before
    assert pop.quit().startswith(b"+OK Logging out, messages deleted")
    imap.noop()
    _, numbers = imap.response("EXPUNGE")
    assert apply_expunges(uids, [int(n) for n in numbers if n]) == \
        [uids[0], uids[2], uids[4], uids[5]]
    after = uid_flags(imap)
    assert sorted(after) == [uids[0], uids[2], uids[4], uids[5]]
    assert "\\Seen" in after[uids[0]]
    assert after[uids[2]] == before[uids[2]] == {"\\Flagged"}
    assert after[uids[4]] == before[uids[4]] and after[uids[5]] == before[uids[5]]
    imap.logout()


class RawImap:
    """Just enough IMAP on a socket for IDLE (imaplib has none before Python 3.14)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")
        self.file.readline()

    def command(self, tag: str, text: str) -> list[bytes]:
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        return self.until(tag.encode() + b" ")

    def until(self, prefix: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            lines.append(line)
            if line.startswith(prefix):
                return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_pop3_deletes_arrive_in_imap_idle(server: CoteServer) -> None:
    uids = fill(server, 5)
    imap = RawImap(server.ports["imap"])
    imap.command("a", f"LOGIN {USER} {PASSWORD}")
    imap.command("b", "SELECT INBOX")
    imap.sock.sendall(b"c IDLE\r\n")
    assert imap.file.readline().startswith(b"+ ")
    pop = pop3_login(server)
    pop.retr(5)
    pop.dele(1)
    pop.dele(3)
    pop.quit()
    seen: list[bytes] = []
    while len(expunged_seqs(seen)) < 2 or not any(b"\\Seen" in x for x in seen):
        try:
            line = imap.file.readline()
        except TimeoutError:
            raise AssertionError(f"IDLE saw only {seen!r}") from None
        assert line, "IDLE ended without the POP3 changes"
        seen.append(line)
    imap.sock.sendall(b"DONE\r\n")
    imap.until(b"c ")
    assert apply_expunges(uids, expunged_seqs(seen)) == [uids[1], uids[3], uids[4]]
    fetches = [x for x in seen if b" FETCH " in x]
    assert all(b"\\Seen" in x for x in fetches)
    reply = imap.command("d", "UID FETCH 1:* (FLAGS)")
    flags = {int(m.group(1)): x for x in reply if (m := re.search(rb"UID (\d+)", x))}
    assert sorted(flags) == [uids[1], uids[3], uids[4]]
    assert b"\\Seen" in flags[uids[4]] and b"\\Seen" not in flags[uids[1]]
    imap.close()


def test_pop3_session_begun_before_imap_expunges(server: CoteServer) -> None:
    uids = fill(server, 5)
    pop = pop3_login(server)
    assert pop.stat()[0] == 5
    listing = pop.uidl()[1]
    imap = imap_login(server)
    imap.select("INBOX")
    imap.uid("STORE", f"{uids[1]},{uids[3]}", "+FLAGS.SILENT", "(\\Deleted)")
    imap.expunge()
    # The POP3 session keeps its login-time numbering; what IMAP removed is gone.
    assert pop.stat()[0] == 5
    assert pop.uidl()[1] == listing
    with pytest.raises(poplib.error_proto, match=r"-ERR Message 2 expunged\."):
        pop.retr(2)
    _, lines, _ = pop.retr(3)
    assert b"\r\n".join(lines) + b"\r\n" == message(2)
    pop.dele(3)
    pop.dele(4)  # already expunged by IMAP: deleting it again is harmless
    assert pop.quit().startswith(b"+OK Logging out")
    imap.noop()
    assert sorted(uid_flags(imap)) == [uids[0], uids[4]]
    imap.logout()
    # A new POP3 session sees the result of both.
    pop = pop3_login(server)
    assert pop.stat()[0] == 2
    _, lines, _ = pop.retr(2)
    assert b"\r\n".join(lines) + b"\r\n" == message(4)
    pop.quit()


def test_session_lock_through_the_stack() -> None:
    """pop3_lock_session in a real master: a second session waits Dovecot's 10 s and gets
    IN-USE; killing the holder's mail process (SIGKILL) frees the maildrop at once."""
    with cote_server("pop3_lock_session = yes\n") as cote:
        fill(cote, 2)
        holder = pop3_login(cote)
        assert holder.stat()[0] == 2
        with pytest.raises(poplib.error_proto,
                           match=re.escape("-ERR [IN-USE] Mailbox is locked by another "
                                          "POP3 session.")):
            pop3_login(cote)
        holder.quit()  # QUIT releases it
        second = pop3_login(cote)
        pid = pop3_pid(USER)
        os.kill(pid, signal.SIGKILL)
        second.close()
        third = pop3_login(cote)  # no 10 s wait: the lock's process is gone
        assert third.stat()[0] == 2
        third.close()  # a dropped connection releases it too
        fourth = pop3_login(cote)
        fourth.quit()
        assert "Couldn't lock POP3 session" in cote.log_text()


def pop3_pid(user: str) -> int:
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if title.startswith(b"cote/pop3 [") and user.encode() in title:
            return int(name)
    raise AssertionError(f"no pop3 process for {user}")
