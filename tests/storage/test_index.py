"""cote's index: rebuildable with the same UIDs, no rescans when nothing changed, external
changes (Dovecot, another session, a user's mv) picked up on the next sync."""

from __future__ import annotations

import imaplib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import flags as F
from cote.storage.index import NAME as INDEX_NAME
from cote.storage.maildir.list import MaildirList
from tests.storage.conftest import as_vmail
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir


@pytest.fixture
def root() -> Iterator[Path]:
    d = server_dir("storage-index")
    yield d / "Maildir"
    remove_dir(d)


def _age(path: Path) -> None:
    """Make the mailbox dirs look older than the 1 s "may still change" window."""
    old = time.time() - 10
    for sub in ("new", "cur"):
        os.utime(path / sub, (old, old))


def _fill(ml: MaildirList) -> list[int]:
    box = ml.open("INBOX")
    with box.begin_append() as tx:
        for i in range(20):
            flags = ["\\Seen"] if i % 2 else []
            if i % 3 == 0:
                flags.append(f"kw{i % 4}")
            tx.add(f"Subject: {i}\n\nbody {i}\n".encode(), flags)
        uids = tx.commit()
    box.store(uids[:5], "+", ["\\Deleted"])
    box.expunge()
    box.close()
    return uids


def test_deleting_the_index_loses_nothing(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    _fill(ml)
    box = ml.open("INBOX")
    before = (box.uidvalidity, box.uidnext, list(box.uids),
              [frozenset(box.flag_names(b)) for b in box.flags])
    ml.close()
    for suffix in ("", "-wal", "-shm"):
        (root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    after = (box.uidvalidity, box.uidnext, list(box.uids),
             [frozenset(box.flag_names(b)) for b in box.flags])
    assert after == before
    assert before[2] == list(range(6, 21))
    ml.close()


def test_a_corrupt_index_is_rebuilt(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    uids = _fill(ml)
    ml.close()
    for suffix in ("-wal", "-shm"):
        (root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    (root / INDEX_NAME).write_bytes(b"this is not sqlite" * 100)
    ml = MaildirList(f"maildir:{root}")
    assert list(ml.open("INBOX").uids) == uids[5:]


def test_noop_sync_does_not_rescan(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    _fill(ml)
    _age(root)
    box = ml.open("INBOX")  # the first look moves new/ -> cur/ and so changes cur/
    time.sleep(0.1)  # past the window where the same mtime tick could hide another change
    box.sync()
    scans = box.scans
    for _ in range(5):
        assert box.sync()[:4] == ([], 0, [], False)
    assert box.scans == scans
    # another session (a new process would do the same) reads the index, not the dirs
    other = MaildirList(f"maildir:{root}").open("INBOX")
    assert other.scans == 0 and list(other.uids) == list(box.uids)
    # a change on disk is noticed: new/ mtime moves
    (root / "new" / "1.M1P1.elsewhere").write_bytes(b"Subject: dropped in\n\nx\n")
    changes = box.sync()
    assert changes.new == 1 and box.scans > scans


def test_other_session_changes_are_reported(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    _fill(ml)
    a, b = ml.open("INBOX"), MaildirList(f"maildir:{root}").open("INBOX")
    target = a.uids[0]
    a.store([target], "+", ["\\Flagged", "$Important"])
    new_uid = a.append(b"Subject: new\n\n.\n")
    a.store([a.uids[1]], "+", ["\\Deleted"])
    gone = a.expunge()
    old_uids = list(b.uids)
    changes = b.sync()
    assert changes.expunged == gone and changes.new == 1 and changes.flags_changed == [target]
    assert [old_uids[s - 1] for s in changes.expunged_seqs] == gone
    assert b.uids[-1] == new_uid
    assert set(b.flag_names(b.flags[b.seq_of(target) - 1])) >= {"\\Flagged", "$Important"}  # type: ignore[operator]
    assert b.modseqs[b.seq_of(target) - 1] > 1  # type: ignore[operator]
    a.sync()
    assert b.highestmodseq == a.highestmodseq


def test_unchangedsince_refuses_modified_messages(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    uids = _fill(ml)[5:8]
    box = ml.open("INBOX")
    ms = box.modseqs[0]
    assert box.store(uids[:1], "+", ["\\Answered"]).changed == uids[:1]
    result = box.store(uids, "+", ["\\Flagged"], unchangedsince=ms)
    assert result.modified == uids[:1] and result.changed == uids[1:]
    assert not box.flags[0] & F.FLAGGED


def test_user_mv_and_flag_rename_are_picked_up(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    uids = _fill(ml)
    box = ml.open("INBOX")
    cur = root / "cur"
    name = next(n for n in os.listdir(cur) if n.endswith(":2,"))
    os.rename(cur / name, cur / (name + "FT"))  # a mail client flagging by rename
    changes = box.sync()
    (uid,) = changes.flags_changed
    assert box.flags[box.seq_of(uid) - 1] & (F.FLAGGED | F.DELETED) == F.FLAGGED | F.DELETED  # type: ignore[operator]
    victim = next(n for n in os.listdir(cur) if n.endswith(":2,S"))
    os.unlink(cur / victim)
    assert len(box.sync().expunged) == 1
    assert set(box.uids) < set(uids)


def test_sizes_dates_bytes_and_cache(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    msg = b"Subject: x\n\nline one\nline two\r\n"
    uid = box.append(msg, internal_date=1577872800.0)
    box.sync()
    (d,) = box.details([uid])
    assert (d.size, d.vsize, d.internal_date) == (len(msg), len(msg) + 3, 1577872800.0)
    assert box.read_message(uid) == msg and box.read_message(uid, 3, 5) == msg[3:8]
    assert box.cache_get(uid, "envelope") is None
    box.cache_put(uid, "envelope", b'("date" "x")')
    assert MaildirList(f"maildir:{root}").open("INBOX").cache_get(uid, "envelope") == \
        b'("date" "x")'
    st = box.status()
    assert (st.messages, st.size, st.unseen, st.uidnext) == (1, len(msg) + 3, 1, uid + 1)


def test_watcher_wakes_on_other_session_append(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    watcher = box.watch()
    try:
        assert not watcher.wait(0.05)
        MaildirList(f"maildir:{root}").open("INBOX").append(b"Subject: wake\n\n.\n")
        assert watcher.wait(2)
        watcher.drain()
        assert box.sync().new == 1
    finally:
        watcher.close()


@pytest.mark.oracle
def test_changes_made_by_dovecot_are_picked_up(dovecot: DovecotOracle) -> None:
    root = dovecot.user_maildir("user1")
    with as_vmail():
        ml = MaildirList(f"maildir:{root}")
        box = ml.open("INBOX")
        with box.begin_append() as tx:
            for i in range(4):
                tx.add(f"Subject: {i}\r\n\r\n.\r\n".encode())
            uids = tx.commit()
        box.sync()
    imap = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"])
    imap.login("user1", "pass1")
    imap.select("INBOX")
    imap.uid("STORE", str(uids[0]), "+FLAGS", r"(\Seen dovecot-kw)")
    imap.uid("STORE", str(uids[1]), "+FLAGS", r"(\Deleted)")
    imap.expunge()
    imap.append("INBOX", r"(\Flagged)", None, b"Subject: by dovecot\r\n\r\n.\r\n")
    imap.logout()
    with as_vmail():
        changes = box.sync()
        assert changes.expunged == [uids[1]]
        assert changes.flags_changed == [uids[0]]
        assert changes.new == 1 and box.uids[-1] == uids[-1] + 1
        assert set(box.flag_names(box.flags[0])) == {"\\Seen", "dovecot-kw"}
        assert box.flag_names(box.flags[-1]) == ["\\Flagged"]
        ml.close()


def test_recent_belongs_to_the_first_session(root: Path) -> None:
    ml = MaildirList(f"maildir:{root}")
    first = ml.open("INBOX")
    uids = _fill(ml)[5:]
    first.sync()
    assert first.recent_uids() == uids
    second = MaildirList(f"maildir:{root}").open("INBOX")
    assert second.recent_uids() == [] and len(second) == len(uids)
    late = second.append(b"Subject: late\n\n.\n")
    peek = MaildirList(f"maildir:{root}").open("INBOX", readonly=True)
    assert peek.status().recent == 1 and peek.recent_uids() == []  # EXAMINE claims nothing
    first.sync()
    assert first.recent_uids() == [*uids, late]
    second.sync()
    assert second.recent_uids() == []
