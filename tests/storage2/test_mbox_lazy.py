"""``mbox_lazy_writes``: flag changes wait for a full write sync (EXPUNGE, CHECK, close), as in
Dovecot; the same IMAP session against Dovecot and cote on copies of one mbox gives the same
answers and the same file bytes."""

from __future__ import annotations

import imaplib
import multiprocessing
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import MboxList, MboxSettings, open_storage
from tests.storage2.conftest import as_vmail
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import mail_user

LOCATION = "mbox:~/mail:INBOX=~/inbox"
USERS = {"seed": "pw", "dv": "pw", "ct": "pw", "crash": "pw", "eager": "pw"}
MESSAGES = [b"Subject: m%d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n" % (i, i)
            for i in range(1, 6)]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[DovecotOracle, CoteServer]]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users=USERS, mail_location=LOCATION)
    dc.start()
    cote = CoteServer(mail_location=LOCATION, passwd_file=dc.dir / "users", protocols="imap")
    try:
        m = login(dc.ports["imap"], "seed")
        for i, data in enumerate(MESSAGES):
            m.append("INBOX", "(\\Seen)" if i == 3 else None, None, data)
        m.select("INBOX")  # Dovecot writes its X-UID/Status headers
        m.logout()
        cote.start()
        yield dc, cote
    finally:
        cote.cleanup()
        dc.cleanup()


def login(port: int, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, USERS[user])
    return m


def inbox(dc: DovecotOracle, user: str) -> Path:
    return dc.dir / "home" / user / "inbox"


def seed_copy(dc: DovecotOracle, user: str) -> bytes:
    """``user`` gets a byte copy of the seed user's mbox (no index of either server)."""
    vm = mail_user()
    target = inbox(dc, user)
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(inbox(dc, "seed"), target)
    for p in (target.parent, target):
        os.chown(p, vm.pw_uid, vm.pw_gid)
    return target.read_bytes()


def session_script(port: int, user: str, path: Path, original: bytes) -> dict[str, object]:
    out: dict[str, object] = {}
    m = login(port, user)
    out["select"] = m.select("INBOX")
    out["store"] = m.store("1", "+FLAGS", "(\\Flagged kw1)")
    out["store seen"] = m.store("2", "+FLAGS", "(\\Seen)")
    out["lazy"] = path.read_bytes() == original  # nothing written yet
    other = login(port, user)  # another session sees the pending changes
    other.select("INBOX")
    out["other"] = other.fetch("1:*", "(FLAGS)")[1]
    other.logout()
    out["check"] = m.check()[0]  # the tagged text carries timings
    out["written at CHECK"] = path.read_bytes() != original
    out["store 2"] = m.store("3", "+FLAGS", "(\\Deleted \\Answered)")
    out["store 3"] = m.store("4", "-FLAGS", "(\\Seen)")
    out["expunge"] = m.expunge()
    out["store 4"] = m.store("1", "-FLAGS", "(\\Flagged)")
    out["fetch"] = m.fetch("1:*", "(UID FLAGS RFC822.SIZE)")[1]
    m.logout()
    return out


def test_same_session_same_answers_same_file(
        servers: tuple[DovecotOracle, CoteServer]) -> None:
    dc, cote = servers
    original = seed_copy(dc, "dv")
    assert seed_copy(dc, "ct") == original
    want = session_script(dc.ports["imap"], "dv", inbox(dc, "dv"), original)
    got = session_script(cote.ports["imap"], "ct", inbox(dc, "ct"), original)
    assert want["lazy"] is True and want["written at CHECK"] is True
    for key in want:
        assert (key, got[key]) == (key, want[key])
    # the same file bytes: metadata headers updated in place as Dovecot does (a new
    # X-Status after Content-Length, an emptied one left as "X-Status: ", X-Keywords
    # padding keeping each message's length)
    ours, theirs = inbox(dc, "ct").read_bytes(), inbox(dc, "dv").read_bytes()
    assert ours == theirs
    # and Dovecot reads both files alike
    answers = []
    for user in ("ct", "dv"):
        m = login(dc.ports["imap"], user)
        m.select("INBOX", readonly=True)
        answers.append(m.fetch("1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")[1])
        m.logout()
    assert answers[0] == answers[1]


def comparable(mbox: bytes) -> list[bytes]:
    """The file's lines without empty X-Status fields and X-Keywords padding."""
    return [line.rstrip(b" ") if line.startswith(b"X-Keywords:") else line
            for line in mbox.split(b"\n") if line != b"X-Status: "]


def _crashing_writer(home: str, ready: multiprocessing.synchronize.Event) -> None:
    with as_vmail():
        ml = open_storage(LOCATION, home=home, user="crash")
        box = ml.open("INBOX")
        box.store([box.uids[0]], "+", ["\\Answered", "late"])
        ready.set()
        os.kill(os.getpid(), signal.SIGKILL)  # before any write sync


def test_sigkill_before_the_write_keeps_every_message(
        servers: tuple[DovecotOracle, CoteServer]) -> None:
    dc, _ = servers
    original = seed_copy(dc, "crash")
    home = str(dc.dir / "home" / "crash")
    ready = multiprocessing.get_context("fork").Event()
    proc = multiprocessing.get_context("fork").Process(target=_crashing_writer,
                                                        args=(home, ready))
    proc.start()
    proc.join(60)
    assert ready.is_set() and proc.exitcode == -signal.SIGKILL
    assert inbox(dc, "crash").read_bytes() == original  # the mail is untouched
    # Dovecot reads every message; cote shows the kept change and writes it at close
    m = login(dc.ports["imap"], "crash")
    m.select("INBOX", readonly=True)
    assert m.fetch("1:*", "(UID FLAGS)")[1] == [
        b"%d (UID %d FLAGS (%s))" % (i, i, b"\\Seen" if i == 4 else b"")
        for i in range(1, 6)]
    m.logout()
    with as_vmail():
        ml = open_storage(LOCATION, home=home, user="crash")
        with ml.open("INBOX") as box:
            assert box.flag_names(box.flags[0]) == ["\\Answered", "late"]
        ml.close()
    m = login(dc.ports["imap"], "crash")
    m.select("INBOX", readonly=True)
    flags = m.fetch("1", "(FLAGS)")[1][0]
    m.logout()
    assert isinstance(flags, bytes) and b"\\Answered" in flags and b"late" in flags


def test_lazy_writes_no_writes_at_once(servers: tuple[DovecotOracle, CoteServer]) -> None:
    dc, _ = servers
    original = seed_copy(dc, "eager")
    home = str(dc.dir / "home" / "eager")
    with as_vmail():
        for lazy in (True, False):
            ml = MboxList(LOCATION, home=home, settings=MboxSettings(lazy_writes=lazy),
                          user="eager")
            box = ml.open("INBOX")
            before = inbox(dc, "eager").read_bytes()
            box.store([box.uids[1]], "+" if lazy else "-", ["\\Flagged"])
            written = inbox(dc, "eager").read_bytes() != before
            other = ml.open("INBOX", readonly=True)
            seen = box.flag_names(other.flags[1])
            other.close()
            box.close()
            ml.close()
            assert written is not lazy
            assert seen == ([] if not lazy else ["\\Flagged"])
    # +Flagged written at close, then - at once: the same file but for the X-Status field
    # left empty (Dovecot's in-place edit) and the padding that made room for it
    assert comparable(inbox(dc, "eager").read_bytes()) == comparable(original)
    assert b"X-Status: \n" in inbox(dc, "eager").read_bytes()
