"""Maildrop pieces that need no server: the default UIDL's fast path, the mbox header MD5,
what the UPDATE state writes."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cote.mailproc.pop3 import wire
from cote.mailproc.pop3.maildrop import (
    DEFAULT_UIDL_FORMAT,
    Maildrop,
    Pop3Settings,
    mbox_header_md5,
)
from cote.mailproc.pop3.session import Pop3Session, Reply, SendMessage, Update
from cote.storage import flags as F
from cote.storage.maildir.list import MaildirList
from cote.variables import compile_template
from tests.support.env import remove_dir, server_dir

UINT32 = st.integers(min_value=1, max_value=2**32 - 1)


@given(UINT32, UINT32)
def test_default_uidl_fast_path_equals_the_template(uid: int, uidvalidity: int) -> None:
    values = {"u": str(uid), "uid": str(uid), "v": str(uidvalidity),
              "uidvalidity": str(uidvalidity)}
    assert compile_template(DEFAULT_UIDL_FORMAT).expand(values) == \
        f"{uid:08x}{uidvalidity:08x}"


def test_header_md5_takes_the_first_received_and_what_precedes_it() -> None:
    header = (b"Date: early\r\nReceived: one\r\n\ttwo\r\nReceived: second\r\n"
              b"Message-ID: <late@x>\r\nDelivered-To: a@x\r\n\r\nDate: in the body\r\n")
    want = hashlib.md5(b"early" + b"one" + b"\ttwo" + b"a@x").hexdigest()
    assert mbox_header_md5(header) == want
    assert mbox_header_md5(b"") == hashlib.md5(b"").hexdigest()


@pytest.fixture
def root() -> Iterator[Path]:
    d = server_dir("pop3-maildrop")
    yield d / "Maildir"
    remove_dir(d)


def _session(ml: MaildirList, commands: bytes) -> Maildrop:
    """One POP3 session on INBOX up to its UPDATE state (RETRieved messages streamed)."""
    box = ml.open("INBOX")
    maildrop = Maildrop(box, Pop3Settings(), synced=True)
    session = maildrop.session()
    for cmd in wire.LineReader(2047).feed(commands):
        action = session.handle(cmd)
        if isinstance(action, SendMessage):
            with maildrop.open(action.index) as f:
                session.message_sent(action, len(f.read()))
        elif isinstance(action, Update):
            maildrop.commit(session)
    box.close()
    return maildrop


def test_retr_of_a_seen_message_writes_nothing(root: Path) -> None:
    """As Dovecot, QUIT marks \\Seen only what was unseen at RETR: a session that read old
    mail leaves the index and the files as they were, so the next one need not rescan."""
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    box.append(b"Subject: old\r\n\r\nread before\r\n", ["\\Seen"])
    box.append(b"Subject: new\r\n\r\nnot yet\r\n")
    box.close()
    old = time.time() - 10
    for sub in ("new", "cur"):
        os.utime(root / sub, (old, old))
    ml.open("INBOX").close()  # moves new/ to cur/
    time.sleep(0.1)  # past the window in which a directory's mtime may still hide a change
    ml.open("INBOX").close()  # the sync after it: the index now matches the disk
    names = sorted(os.listdir(root / "cur"))

    _session(ml, b"RETR 1\r\nQUIT\r\n")
    later = MaildirList(f"maildir:{root}")
    box = later.open("INBOX")
    assert box.scans == 0, "the session left the index out of date"
    assert sorted(os.listdir(root / "cur")) == names
    box.close()

    _session(later, b"RETR 2\r\nQUIT\r\n")  # an unseen message still gets \Seen
    box = MaildirList(f"maildir:{root}").open("INBOX")
    assert [bool(flags & F.SEEN) for flags in box.flags] == [True, True]
    box.close()


def test_the_uidl_listing_in_one_pass_equals_one_by_one(root: Path) -> None:
    """The default format's listing is built in one pass: same bytes as the per-message path
    (deleted messages left out, a UIDL kept in the uidlist winning), and UIDL n agrees."""
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    for i in range(4):
        box.append(f"Subject: {i}\r\n\r\nbody\r\n".encode())
    box.close()
    box = ml.open("INBOX")
    box.save_pop3_uidls({box.uids[2]: "kept-by-a-migration"})
    maildrop = Maildrop(box, Pop3Settings(), synced=False)
    fast = maildrop.session()
    slow = Pop3Session(maildrop.sizes, maildrop.uidl)
    assert fast.uidl_list is not None and slow.uidl_list is None
    commands = list(wire.LineReader(2047).feed(b"UIDL\r\nDELE 2\r\nUIDL\r\nUIDL 3\r\n"))
    answers = [[s.handle(c) for c in commands] for s in (fast, slow)]
    assert answers[0] == answers[1]
    listing = answers[0][2]
    assert isinstance(listing, Reply)
    v = box.uidvalidity
    assert listing.data == (f"+OK\r\n1 {box.uids[0]:08x}{v:08x}\r\n3 kept-by-a-migration\r\n"
                            f"4 {box.uids[3]:08x}{v:08x}\r\n.\r\n").encode()
    box.close()
