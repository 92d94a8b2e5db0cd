"""mbox against Dovecot: each reads the other's file with the same UIDs, flags, keywords and
message bytes; the same LIST; locks that Dovecot's deliverers respect."""

from __future__ import annotations

import fcntl
import imaplib
import multiprocessing
import os
import re
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import MboxList, MboxSettings, open_storage
from cote.storage.dotlock import LockTimeout
from tests.storage2.conftest import as_vmail
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import chown_tree, mail_user

LOCATION = "mbox:~/mail:INBOX=~/inbox"
FETCH = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\) RFC822\.SIZE (\d+)")

MESSAGES: list[tuple[bytes, str | None]] = [
    (b"From: a@example.org\r\nSubject: one\r\n\r\nhello\r\nFrom me\r\n>From x\r\n", None),
    (b"Subject: two\r\n\r\nbody2\r\n", r"(\Seen \Flagged $Label1 work)"),
    (b"Subject: three\r\n\r\nbody3", r"(\Answered \Draft \Deleted)"),
    (b"Subject: four\r\nX-UID: 77\r\nStatus: RO\r\n\r\nheaders that look like ours\r\n",
     r"(\Seen)"),
]


@pytest.fixture(scope="module")
def mbox_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users={u: "pw" for u in ("user1", "user2", "user3", "user4", "user5")},
                       mail_location=LOCATION)
    dc.start()
    try:
        yield dc
    finally:
        dc.cleanup()


def home(dc: DovecotOracle, user: str) -> Path:
    return dc.dir / "home" / user


def cote_list(dc: DovecotOracle, user: str) -> MboxList:
    h = home(dc, user)
    h.mkdir(exist_ok=True)
    vm = mail_user()
    chown_tree(h, vm.pw_uid, vm.pw_gid)
    ml = open_storage(LOCATION, home=str(h), user=user)
    assert isinstance(ml, MboxList)
    return ml


def dovecot_view(dc: DovecotOracle, user: str, box: str = "INBOX"
                 ) -> tuple[int, list[tuple[int, frozenset[str], int, bytes]]]:
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login(user, "pw")
    typ, data = m.select(box, readonly=True)
    assert typ == "OK", data
    uidv = int(m.untagged_responses["UIDVALIDITY"][0])
    out = []
    if int(data[0] or 0):
        typ, rows = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
        for item in rows:
            if isinstance(item, tuple):
                mm = FETCH.search(item[0])
                assert mm, item[0]
                fl = frozenset(f for f in mm.group(2).decode().split() if f != "\\Recent")
                out.append((int(mm.group(1)), fl, int(mm.group(3)), item[1]))
    m.logout()
    return uidv, out


def cote_view(ml: MboxList, box: str = "INBOX"
              ) -> tuple[int, list[tuple[int, frozenset[str], int, bytes]]]:
    with ml.open(box, readonly=True) as mb:
        out = [(d.uid, frozenset(mb.flag_names(d.flags)), d.vsize,
                mb.read_message(d.uid).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
               for d in mb.details(mb.uids)]
        return mb.uidvalidity, out


def test_cote_reads_dovecots_mbox(mbox_dovecot: DovecotOracle) -> None:
    dc = mbox_dovecot
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login("user1", "pw")
    for data, flags in MESSAGES:
        assert m.append("INBOX", flags, None, data)[0] == "OK"
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Answered NewKw)")
    m.store("2", "-FLAGS", "(work)")
    m.expunge()  # message 3 had \Deleted
    m.create("Sub/Folder")
    m.append("Sub/Folder", None, None, b"Subject: s\r\n\r\nx\r\n")
    m.logout()
    expected = dovecot_view(dc, "user1")
    assert [u for u, *_ in expected[1]] == [1, 2, 4]
    with as_vmail():
        ml = cote_list(dc, "user1")
        assert cote_view(ml) == expected
        assert cote_view(ml, "Sub/Folder") == dovecot_view(dc, "user1", "Sub/Folder")
        names = {i.name: i.attributes for i in ml.list("*")}
        ml.close()
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login("user1", "pw")
    listed = {}
    for line in m.list()[1]:
        assert isinstance(line, bytes)
        mm = re.match(rb'\(([^)]*)\) "/" (.*)', line)
        assert mm
        listed[mm.group(2).decode().strip('"')] = frozenset(mm.group(1).decode().split())
    m.logout()
    # \Marked (atime < mtime) depends on the order the two servers read the files in
    marks = {"\\Marked"}
    assert {k: v - marks for k, v in names.items()} == {k: v - marks for k, v in listed.items()}


def test_dovecot_reads_cotes_mbox(mbox_dovecot: DovecotOracle) -> None:
    dc = mbox_dovecot
    with as_vmail():
        ml = cote_list(dc, "user2")
        with ml.open("INBOX") as box:
            for data, flags in MESSAGES:
                names = flags.strip("()").split() if flags else []
                box.append(data, names, 1577872800.0)
            box.sync()
            box.store([1], "+", ["\\Answered", "NewKw"])
            box.store([2], "-", ["work"])
            box.expunge()
        ml.create("Sub/Folder")
        with ml.open("Sub/Folder") as box:
            box.append(b"Subject: s\r\n\r\nx\r\n")
        ours = cote_view(ml)
        ours_sub = cote_view(ml, "Sub/Folder")
        ml.close()
    assert [u for u, *_ in ours[1]] == [1, 2, 4]
    assert dovecot_view(dc, "user2") == ours
    assert dovecot_view(dc, "user2", "Sub/Folder") == ours_sub
    # and back: Dovecot changes flags in cote's file, cote sees them
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login("user2", "pw")
    m.select("INBOX")
    m.store("2", "+FLAGS", "(\\Deleted Later)")
    m.logout()
    with as_vmail():
        ml = cote_list(dc, "user2")
        assert cote_view(ml) == dovecot_view(dc, "user2")
        ml.close()


def test_mail_delivered_without_uids_gets_the_same_uids(mbox_dovecot: DovecotOracle) -> None:
    """An MTA appends plain mbox entries: cote numbers them, Dovecot keeps cote's numbers."""
    dc = mbox_dovecot
    with as_vmail():
        ml = cote_list(dc, "user3")
        inbox = home(dc, "user3") / "inbox"
        with ml.open("INBOX") as box:
            box.append(b"Subject: first\n\nfirst\n")
        with open(inbox, "ab") as f:
            f.write(b"From mta@example.org  Thu Jan  2 10:00:00 2020\nSubject: mta\n\n"
                    b"From the MTA\nline\n\n"
                    b"From mta@example.org  Thu Jan  2 10:00:01 2020\nSubject: mta2\n\nx\n\n")
        with ml.open("INBOX") as box:
            assert list(box.uids) == [1, 2, 3]
            assert box.read_message(2) == b"Subject: mta\n\nFrom the MTA\nline\n"
            assert box.recent_uids() == [1, 2, 3]  # no session had seen any of them
        ours = cote_view(ml)
        ml.close()
    assert dovecot_view(dc, "user3") == ours


LOCKER = """
import fcntl, sys, time
f = open(sys.argv[1], "r+b")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_writes_wait_for_fcntl_and_dotlock(mbox_dovecot: DovecotOracle) -> None:
    dc = mbox_dovecot
    with as_vmail():
        ml = cote_list(dc, "user4")
        inbox = str(home(dc, "user4") / "inbox")
        with ml.open("INBOX") as box:
            box.append(b"Subject: a\n\na\n")
        p = subprocess.Popen([sys.executable, "-c", LOCKER, inbox, "1.0"],
                             stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline() == b"locked\n"
        start = time.monotonic()
        with ml.open("INBOX") as box:
            box.append(b"Subject: b\n\nb\n")
        assert time.monotonic() - start > 0.5  # waited for the other process's lock
        p.wait()
        # a dotlock held elsewhere (a live process) makes a short-timeout writer give up
        holder = subprocess.Popen(["sleep", "5"])
        try:
            Path(inbox + ".lock").write_text(f"{holder.pid}:{os.uname().nodename}")
            quick = MboxList(ml.loc, settings=MboxSettings(lock_timeout=0.3), user="user4")
            with quick.open("INBOX") as box, pytest.raises(LockTimeout):
                box.append(b"Subject: c\n\nc\n")
        finally:
            holder.kill()
            holder.wait()
            os.unlink(inbox + ".lock")
        # read locks only (fcntl): a reader never needs the dotlock
        fd = os.open(inbox, os.O_RDONLY)
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        os.close(fd)
        ml.close()
    _, msgs = dovecot_view(dc, "user4")
    assert [u for u, *_ in msgs] == [1, 2]


def _cote_appender(home_dir: str, tag: str, n: int) -> None:
    with as_vmail():
        ml = open_storage(LOCATION, home=home_dir, user="user5")
        for i in range(n):
            with ml.open("INBOX") as box:
                box.append(f"Subject: {tag}-{i}\n\nbody {tag} {i}\n".encode())
        ml.close()


def test_concurrent_writers_with_dovecot_lmtp(mbox_dovecot: DovecotOracle) -> None:
    """cote processes append while Dovecot's LMTP delivers to the same mbox: every message
    arrives once, with one set of UIDs both servers agree on."""
    dc = mbox_dovecot
    h = home(dc, "user5")
    h.mkdir(exist_ok=True)
    vm = mail_user()
    chown_tree(h, vm.pw_uid, vm.pw_gid)
    procs = [multiprocessing.get_context("fork").Process(
        target=_cote_appender, args=(str(h), tag, 8)) for tag in ("p", "q")]
    for p in procs:
        p.start()
    for i in range(8):
        s = smtplib.LMTP("127.0.0.1", dc.ports["lmtp"])
        s.sendmail("a@example.org", ["user5"], f"Subject: lmtp-{i}\r\n\r\nlmtp {i}\r\n".encode())
        s.close()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    uidv, msgs = dovecot_view(dc, "user5")
    subjects = sorted(re.search(rb"Subject: (\S+)", body).group(1).decode()  # type: ignore[union-attr]
                      for *_, body in msgs)
    assert subjects == sorted([f"{t}-{i}" for t in ("p", "q", "lmtp") for i in range(8)])
    uids = [u for u, *_ in msgs]
    assert uids == sorted(set(uids))
    with as_vmail():
        ml = open_storage(LOCATION, home=str(h), user="user5")
        assert isinstance(ml, MboxList)
        assert cote_view(ml) == (uidv, msgs)
        ml.close()
    errors = [ln for ln in dc.log_path.read_text().splitlines()
              if ("Error:" in ln or "Panic:" in ln or "Warning:" in ln) and "user5" in ln]
    assert errors == []
