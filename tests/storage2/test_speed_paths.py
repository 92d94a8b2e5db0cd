"""The fast paths of the speed work give the answers of the slow ones they replace:
line counts from per-chunk running totals, STATUS from the index's trigger-kept counters,
a SELECT view from the packed snapshot plus the rows changed since."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cote.storage import MaildirList, open_storage
from cote.storage.api import Mailbox
from cote.storage.index import Index
from cote.storage.message import scanner


@pytest.mark.parametrize("seed", range(40))
def test_prefix_counts_equal_direct_counts(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(scanner, "_CHUNK", rng.choice([1, 2, 3, 7, 16]))
    buf = bytes(rng.choice(b"\r\n\r\nab-") for _ in range(rng.randrange(0, 400)))
    counter = scanner._PrefixCounts(buf, len(buf))
    for _ in range(60):
        start = rng.randrange(0, len(buf) + 1)
        end = rng.randrange(start, len(buf) + 1)
        lf = buf.count(b"\n", start, end)
        assert counter.counts(start, end) == (lf, lf - buf[start:end].count(b"\r\n"))


def _status_by_rows(mlist: MaildirList, name: str) -> tuple[int, int, int, int]:
    with mlist.open(name, readonly=True) as box:
        details = box.details(box.uids)
        return (len(details), sum(1 for d in details if not d.flags & 1),
                sum(1 for d in details if d.flags & 8), sum(d.vsize for d in details))


def test_status_counters_follow_every_change(tmp_path: Path) -> None:
    mlist = open_storage(f"maildir:{tmp_path}/Maildir", home=str(tmp_path))
    assert isinstance(mlist, MaildirList)
    rng = random.Random(7)
    with mlist.open("INBOX") as box:
        for i in range(30):
            box.append(b"Subject: %d\n\n" % i + b"x\n" * rng.randrange(5),
                       rng.choice([[], ["\\Seen"], ["\\Deleted", "kw"]]))
        box.sync()
        for _ in range(20):
            uids = rng.sample(list(box.uids), 5)
            box.store(uids, rng.choice("+-="), rng.choice([["\\Seen"], ["\\Deleted"], ["k2"]]))
            st = mlist.status("INBOX")
            assert (st.messages, st.unseen, st.deleted, st.size) == \
                _status_by_rows(mlist, "INBOX")
        box.expunge()
        box.sync()
    st = mlist.status("INBOX")
    assert st.deleted == 0
    assert (st.messages, st.unseen, st.deleted, st.size) == _status_by_rows(mlist, "INBOX")
    mlist.close()


def test_view_from_snapshot_equals_view_from_rows(tmp_path: Path) -> None:
    mlist = open_storage(f"maildir:{tmp_path}/Maildir", home=str(tmp_path))
    with mlist.open("INBOX") as box:
        for i in range(50):
            box.append(b"Subject: %d\n\nbody\n" % i, ["\\Seen"] if i % 3 else [])
    first = mlist.open("INBOX")  # a full load: saves the snapshot
    first.close()
    assert mlist.index.snapshot(first._box) is not None  # type: ignore[attr-defined]
    with mlist.open("INBOX") as box:
        box.store(list(box.uids[:10]), "+", ["\\Flagged", "kw"])
        box.store([box.uids[-1]], "+", ["\\Deleted"])
        box.expunge()
        box.append(b"Subject: late\n\nbody\n")
    with mlist.open("INBOX") as snap_view:  # snapshot + changes since
        got = (list(snap_view.uids), list(snap_view.flags), list(snap_view.modseqs))
    mlist.index.db.execute("DELETE FROM snapshot")  # type: ignore[attr-defined]
    with mlist.open("INBOX") as row_view:
        want = (list(row_view.uids), list(row_view.flags), list(row_view.modseqs))
    assert got == want
    assert len(got[0]) == 50
    mlist.close()


def test_bulk_insert_counts_like_the_trigger(tmp_path: Path) -> None:
    """Big inserts (a cold sync) count in one UPDATE instead of the per-row trigger: the
    same counters, INTEGER and hex TEXT flags, replaced rows included."""
    rows = [(u, f"cur/{u}", u % 3 if u % 7 else "2" + "0" * 20 if u % 2 else "3" + "0" * 19 + "9",
             1, 1.5e9, 100, 102 + u % 5) for u in range(1, 3001)]
    got = []
    for bulk in (500, 10**9):
        ix = Index(str(tmp_path / f"{bulk}.sqlite"))
        ix.bulk_rows = bulk
        box = ix.box("k")
        assert box is not None
        ix.insert(box.id, rows[:1000])
        ix.insert(box.id, rows[500:])
        got.append(ix.counters(box.id))
        triggers = {r[0] for r in ix.db.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger'")}
        assert triggers == {"msg_counted_in", "msg_counted_out", "msg_counted_change"}
        ix.close()
    assert got[0] == got[1] == (3000, 1929, 214, 312000)


def test_internal_dates_read_on_demand(tmp_path: Path) -> None:
    """A sync indexes S=/W= names from the listing alone; INTERNALDATE is the file's mtime
    all the same, read once and kept."""
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        data = b"Subject: %d\n\nx\n" % i
        name = f"17000000{i:02d}.M1P1.host,S={len(data)},W={len(data) + 3}:2,S"
        (root / "cur" / name).write_bytes(data)
        os.utime(root / "cur" / name, (1_600_000_000 + i, 1_600_000_000 + i))
    mlist = open_storage(f"maildir:{root}", home=str(tmp_path))
    with mlist.open("INBOX") as box:
        stored = mlist.index.db.execute(  # type: ignore[attr-defined]
            "SELECT idate FROM msg ORDER BY uid").fetchall()
        assert stored == [(-1.0,)] * 3
        dates = [d.internal_date for d in box.details(box.uids)]
        assert dates == [1_600_000_000.0, 1_600_000_001.0, 1_600_000_002.0]
        stored = mlist.index.db.execute(  # type: ignore[attr-defined]
            "SELECT idate FROM msg ORDER BY uid").fetchall()
        assert [d for (d,) in stored] == dates
        assert box.details(box.uids[:1])[0].vsize == len(b"Subject: 0\n\nx\n") + 3
    mlist.close()


def _columns(box: Mailbox) -> tuple[list[int], list[int], list[int]]:
    return list(box.uids), list(box.flags), list(box.modseqs)


@pytest.mark.parametrize("seed", range(8))
def test_a_view_kept_current_equals_a_fresh_one(tmp_path: Path, seed: int) -> None:
    """A session's view takes in its own STORE and APPEND without reading them back, and a
    refresh with HIGHESTMODSEQ unchanged reads nothing: with another session changing the
    mailbox in between, the view after each sync is still the one a fresh load gives, and
    the sync reports what changed its length."""
    rng = random.Random(seed)
    where = f"maildir:{tmp_path}/Maildir"
    mine, other, check = (open_storage(where, home=str(tmp_path)) for _ in range(3))
    with mine.open("INBOX") as a, other.open("INBOX") as b:
        for i in range(8):
            a.append(b"Subject: %d\n\nbody\n" % i, ["\\Seen"] if i % 2 else [])
        a.sync()
        b.sync()
        for _ in range(50):
            box = a if rng.random() < 0.7 else b
            op = rng.choice(["store", "store", "append", "expunge", "sync"])
            if op == "store" and len(box):
                uids = rng.sample(list(box.uids), min(len(box), rng.randint(1, 3)))
                box.store(uids, rng.choice("+-="),
                          rng.choice([["\\Flagged"], ["\\Deleted"], ["\\Seen", "kw"]]))
            elif op == "append":
                box.append(b"Subject: more\n\nbody\n", rng.choice([[], ["\\Seen"]]))
            elif op == "expunge":
                box.expunge()
            if box is b:
                b.sync()
                continue
            before = len(a)
            changes = a.sync()
            assert len(a) == before + changes.new - len(changes.expunged)
            with check.open("INBOX", readonly=True) as fresh:
                assert _columns(a) == _columns(fresh)
    for mlist in (mine, other, check):
        mlist.close()
