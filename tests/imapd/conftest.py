"""Fixtures for the IMAP mail process tests: one Dovecot per module holding two users whose
Maildirs are filled identically (``dcuser`` is served by Dovecot, ``coteuser`` by cote's
PREAUTH process dropped to the test mail user), and a small IMAP client that reads
responses with their literals."""

from __future__ import annotations

import imaplib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import mail_user

DATE = '"14-Jul-2021 10:20:30 +0000"'

MESSAGES: list[tuple[str, bytes]] = [
    ("(\\Seen)", b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
                 b"Subject: hello world\r\nDate: Wed, 14 Jul 2021 10:00:00 +0200\r\n"
                 b"Message-ID: <m1@example.com>\r\n\r\nfirst body line\r\nsecond\r\n"),
    ("()", b"From: Bob <bob@example.org>\nTo: alice@example.com\nCc: carol@example.net\n"
           b"Subject: Re: hello world\nDate: Thu, 15 Jul 2021 09:00:00 +0000\n"
           b"Message-ID: <m2@example.org>\nIn-Reply-To: <m1@example.com>\n"
           b"References: <m1@example.com>\n\nreply text\n"),
    ("(\\Flagged \\Answered)",
     b"From: carol@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?= menu\r\n"
     b"Date: Fri, 16 Jul 2021 12:00:00 -0500\r\nMessage-ID: <m3@example.net>\r\n"
     b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
     b"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 au lait\r\n"
     b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
     b"Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAECAwQFBgc=\r\n"
     b"--XX--\r\n"),
    ("()", b"Subject: no from\r\n\r\n" + b"".join(b"line %04d of a longer body\r\n" % i
                                                 for i in range(400))),
    ("(\\Deleted)", b"From: dave@example.com\r\nSubject: to be deleted\r\n"
                    b"Message-ID: <m5@example.com>\r\nReferences: <m3@example.net>\r\n\r\nbye\r\n"),
    ("(\\Draft $Label1)", b"From: eve@example.com\r\nTo: alice@example.com\r\n"
                          b"Subject: Fwd: hello world\r\n"
                          b"Content-Type: message/rfc822\r\n\r\n"
                          b"From: inner@example.com\r\nSubject: inner\r\n\r\ninner body\r\n"),
]
PAIRS = ("user", "rand", "misc", "exp")
"""Each test that changes mail uses its own pair of users: ``dc<name>`` and ``cote<name>``."""
USERS = {f"{side}{name}": "secret" for name in PAIRS for side in ("dc", "cote")}
PASSWORD = "secret"


def users_of(pairs: tuple[str, ...]) -> dict[str, str]:
    """``dc<name>`` and ``cote<name>`` for each pair name, all with ``PASSWORD``."""
    return {f"{side}{name}": PASSWORD for name in pairs for side in ("dc", "cote")}


def fill(dc: DovecotOracle, user: str) -> None:
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login(user, PASSWORD)
    for box in ("Archive", "Archive.2021", "Sent", "Trash"):
        imap.create(box)
    imap.subscribe("Archive")
    imap.subscribe("Sent")
    for flags, msg in MESSAGES:
        typ, _ = imap._simple_command("APPEND", "INBOX", flags, DATE,  # type: ignore[attr-defined]
                                      f"{{{len(msg)}+}}\r\n" + msg.decode("latin-1"))
        assert typ == "OK"
    imap.append("Archive", "(\\Seen)", DATE, MESSAGES[0][1])
    imap.logout()


@pytest.fixture(scope="module")
def store(request: pytest.FixtureRequest) -> Iterator[DovecotOracle]:
    """One Dovecot per module; a module may add user pairs of its own (``EXTRA_PAIRS``)."""
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed")
    users = {**USERS, **users_of(tuple(getattr(request.module, "EXTRA_PAIRS", ())))}
    dc = DovecotOracle(users=users).start()
    for user in users:
        fill(dc, user)
    yield dc
    dc.cleanup()


class Client:
    """Sends one command at a time and returns everything up to its tagged reply."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.proc = proc
        self.n = 0

    def line(self) -> bytes:
        """One response line with any literals it carries."""
        out = self.file.readline()
        while True:
            m = re.search(rb"~?\{(\d+)\}\r\n$", out)
            if not m:
                return out
            out += self.file.read(int(m.group(1)))
            out += self.file.readline()

    def command(self, text: str | bytes, tag: str | None = None) -> bytes:
        if tag is None:
            self.n += 1
            tag = f"t{self.n}"
        raw = text.encode("latin-1") if isinstance(text, str) else text
        self.sock.sendall(tag.encode() + b" " + raw + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> bytes:
        out = []
        while True:
            line = self.line()
            if not line:
                err = b""
                if self.proc is not None and self.proc.stderr is not None:
                    self.proc.kill()
                    err = self.proc.stderr.read()
                raise EOFError(b"".join(out) + b"\n" + err)
            out.append(line)
            if line.startswith(tag.encode() + b" "):
                return b"".join(out)

    def close(self) -> None:
        self.file.close()
        self.sock.close()
        if self.proc is not None:
            self.proc.wait(10)


def dovecot_client(dc: DovecotOracle, user: str = "dcuser") -> Client:
    c = Client(socket.create_connection(("127.0.0.1", dc.ports["imap"]), timeout=20))
    c.line()
    assert b" OK " in c.command(f"LOGIN {user} {PASSWORD}", "login")
    return c


def cote_process(maildir: Path, user: str = "coteuser", extra: list[str] | None = None
                 ) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    ours, theirs = socket.socketpair()
    vmail = mail_user()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cote.mailproc.imap", "-u", user, "--mail", f"maildir:{maildir}",
         "--uid", str(vmail.pw_uid), "--gid", str(vmail.pw_gid), *(extra or [])],
        stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
    theirs.close()
    ours.settimeout(20)
    return ours, proc


def cote_client(dc: DovecotOracle, user: str = "coteuser") -> Client:
    sock, proc = cote_process(dc.user_maildir(user), user)
    c = Client(sock, proc)
    greeting = c.line()
    assert greeting.startswith(b"* PREAUTH [CAPABILITY IMAP4rev1 "), greeting
    return c


_TIMING = re.compile(rb" \(\d+\.\d{3} \+ \d+\.\d{3}(?: \+ \d+\.\d{3})? secs\)\.")
_UIDVALIDITY = re.compile(rb"(UIDVALIDITY|APPENDUID|COPYUID) \d+")
_MARKED = re.compile(rb" ?\\(?:UnMarked|Marked)\b", re.IGNORECASE)
_MODSEQ = re.compile(rb"(MODSEQ \(?|HIGHESTMODSEQ )\d+")


def normalize(data: bytes, *, keyword_lists: bool = True) -> bytes:
    """Mask what legitimately differs between the two servers:

    * the timing suffix of tagged replies (``(0.001 + 0.000 secs).``);
    * UIDVALIDITY values (also inside APPENDUID/COPYUID): each Maildir got its own;
    * modseq values: cote keeps its own modseqs (docs/storage.md), only their order matters;
    * ``* OK [HIGHESTMODSEQ n] Highest`` lines, which Dovecot sends in SELECT/STATUS
      depending on whether its index already tracks modseqs for that mailbox;
    * LIST's ``\\Marked``/``\\UnMarked``, which Dovecot derives from Maildir directory
      times for some folders (cote does not send them);
    * the order of LIST/LSUB rows (Dovecot's is the order it read the directories in);
    * CAPABILITY lists: cote advertises Dovecot's list without the extensions it lacks
      (compared on their own in test_capability_is_dovecots_order);
    * with ``keyword_lists=False`` (the random sequence only): the ``* FLAGS`` and
      ``PERMANENTFLAGS`` lines. A keyword that a STORE or SEARCH names but no message has
      stays in Dovecot's list for as long as its in-memory index cache keeps the mailbox;
      cote forgets it when the mailbox is closed. The fixed scripts compare these lines.
    """
    data = _TIMING.sub(b" (T).", data)
    data = _MARKED.sub(b"", data)
    data = _UIDVALIDITY.sub(rb"\1 V", data)
    data = _MODSEQ.sub(rb"\1M", data)
    lines = [ln for ln in data.split(b"\r\n") if not ln.startswith(b"* OK [HIGHESTMODSEQ ")]
    if not keyword_lists:
        lines = [ln for ln in lines if not ln.startswith((b"* FLAGS ", b"* OK [PERMANENTFLAGS "))]
    lines = [b"* CAPABILITY ..." if ln.startswith(b"* CAPABILITY ") else ln for ln in lines]
    return b"\r\n".join(_sorted_list_rows(lines))


def _sorted_list_rows(lines: list[bytes]) -> list[bytes]:
    """LIST/LSUB rows (each with the STATUS line that follows it) in name order: Dovecot
    lists Maildir folders in its directory-read order, cote in name order."""
    rows: list[list[bytes]] = []
    out: list[bytes] = []
    for ln in lines:
        if ln.startswith((b"* LIST ", b"* LSUB ")):
            rows.append([ln])
        elif ln.startswith(b"* STATUS ") and rows:
            rows[-1].append(ln)
        else:
            for row in sorted(rows, key=lambda r: r[0].rsplit(b" ", 1)[-1]):
                out.extend(row)
            rows = []
            out.append(ln)
    for row in sorted(rows, key=lambda r: r[0].rsplit(b" ", 1)[-1]):
        out.extend(row)
    return out


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
