"""cote's index: rebuildable with the same UIDs, no rescans when nothing changed, external
changes (Dovecot, another session, a user's mv) picked up on the next sync."""

from __future__ import annotations

import imaplib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import flags as F
from cote.storage.index import NAME as INDEX_NAME
from cote.storage.index import WAL_AUTOCHECKPOINT, Index
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


def test_details_reads_dense_and_sparse_uid_sets_alike(root: Path) -> None:
    """A dense set is read as one UID range (a whole maildrop), a sparse one by IN lists:
    both give exactly the asked UIDs that exist, by UID."""
    root.mkdir(parents=True)
    index = Index(str(root / INDEX_NAME))
    box = index.box("INBOX")
    assert box is not None
    index.insert(box.id, [(uid, f"f{uid}", 0, 2, float(uid), uid, uid + 1)
                          for uid in range(1, 51) if uid != 10])
    uids = lambda rows: [r[0] for r in rows]  # noqa: E731
    assert uids(index.details(box.id, range(1, 51))) == [u for u in range(1, 51) if u != 10]
    assert uids(index.details(box.id, [12, 5, 5, 7])) == [5, 7, 12]  # dense, not whole
    assert uids(index.details(box.id, [9, 10, 11])) == [9, 11]
    assert uids(index.details(box.id, [40, 1])) == [1, 40]  # sparse
    assert index.details(box.id, [10]) == [] and index.details(box.id, []) == []
    assert index.details(box.id, [3])[0] == (3, 0, 2, 3.0, 3, 4)
    index.close()


def test_the_wal_stays_small_for_the_next_process(root: Path) -> None:
    """Mail processes end without closing the index, so the next one to open it alone reads
    the whole WAL back: commits copy it into the database long before SQLite's 4 MB."""
    root.mkdir(parents=True)
    path = root / INDEX_NAME
    index = Index(str(path))
    box = index.box("INBOX")
    assert box is not None
    index.insert(box.id, [(uid, f"f{uid}", 0, 2, 0.0, 100, 100) for uid in range(1, 2001)])
    for uid in range(1, 2001, 7):  # one flag change per transaction, spread over the pages
        with index.write():
            index.set_file(box.id, uid, f"f{uid}:2,S", 1, 3)
    frame = 24 + index.db.execute("PRAGMA page_size").fetchone()[0]
    assert (path.parent / (INDEX_NAME + "-wal")).stat().st_size <= 32 + frame * 2 * \
        WAL_AUTOCHECKPOINT
    assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index.close()


def test_an_index_from_before_a_cache_column_gets_it(root: Path) -> None:
    """Columns added after a schema version are ALTERed in on open, once."""
    root.mkdir(parents=True)
    path = str(root / INDEX_NAME)
    index = Index(path)
    columns = [r[1] for r in index.db.execute("PRAGMA table_info(msg)")]
    kept = ", ".join(c for c in columns if c != "searchhdr")
    index.db.executescript(
        f"BEGIN; CREATE TABLE old AS SELECT {kept} FROM msg; DROP TABLE msg; "
        "CREATE TABLE msg(box INTEGER NOT NULL, uid INTEGER NOT NULL, fname TEXT NOT NULL, "
        "flags NOT NULL, modseq INTEGER NOT NULL, idate REAL NOT NULL, size INTEGER NOT NULL, "
        "vsize INTEGER NOT NULL, envelope BLOB, bodystructure BLOB, sortkeys BLOB, "
        "PRIMARY KEY(box, uid)) WITHOUT ROWID; "
        f"INSERT INTO msg SELECT * FROM old; DROP TABLE old; COMMIT;")
    index.close()
    for _ in range(2):
        index = Index(path)
        assert [r[1] for r in index.db.execute("PRAGMA table_info(msg)")] == columns
        assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        index.close()


def test_opening_an_index_keeps_the_locks_of_another_connection(root: Path) -> None:
    """A process that serves several sessions can hold a connection to an index while it
    opens it again. Opening must not close a descriptor of the file: that drops every POSIX
    lock of the process on it, SQLite's too, and another process could then take the
    database from under the first connection (here: switch it out of WAL mode)."""
    root.mkdir(parents=True)
    path = str(root / INDEX_NAME)
    first = Index(path)
    first.db.execute("SELECT count(*) FROM msg").fetchone()  # holds WAL's shared lock
    second = Index(path)
    other = subprocess.run(
        [sys.executable, "-c",
         "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=0); "
         "print(db.execute('PRAGMA journal_mode=DELETE').fetchone()[0])", path],
        capture_output=True, text=True, check=False)
    assert "database is locked" in other.stderr, other.stdout + other.stderr
    assert first.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second.close()
    first.close()
