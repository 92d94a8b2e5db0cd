"""The packed view snapshot (``cote.index.sqlite-view.<box>``) gives the same views as the
index rows: a SELECT answers EXISTS and the first unseen message from the file's header
without unpacking it, a packed view unpacked later is still the view of its SELECT (other
sessions may have changed the mailbox and saved a newer snapshot meanwhile), and a file the
``snapshot`` row does not vouch for is never believed."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cote.storage import MaildirList, open_storage
from cote.storage.api import Mailbox
from cote.storage.flags import FLAGGED, SEEN
from cote.storage.index import bits_from_db
from cote.storage.maildir.mailbox import MaildirMailbox

View = tuple[list[int], list[int], list[int]]


def _storage(tmp_path: Path) -> MaildirList:
    mlist = open_storage(f"maildir:{tmp_path}/Maildir", home=str(tmp_path))
    assert isinstance(mlist, MaildirList)
    return mlist


def _open(mlist: MaildirList) -> MaildirMailbox:
    box = mlist.open("INBOX")
    assert isinstance(box, MaildirMailbox)
    return box


def _columns(box: Mailbox) -> View:
    return list(box.uids), list(box.flags), list(box.modseqs)


def _by_rows(mlist: MaildirList, box: int) -> tuple[View, int | None]:
    """The view as the index rows give it (what a full load builds), and its first unseen."""
    rows = mlist.index.messages(box)
    flags = [bits_from_db(f) for _, f, _ in rows]
    unseen = next((i + 1 for i, f in enumerate(flags) if not f & SEEN), None)
    return ([u for u, _, _ in rows], flags, [m for _, _, m in rows]), unseen


@pytest.mark.parametrize("seed", range(6))
def test_select_from_snapshot_answers_as_rows(seed: int, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Random appends, flag changes (with keywords: 8-byte flags) and expunges by other
    sessions; every SELECT's count and first unseen, taken before the view is unpacked,
    and its columns equal the row-built view's."""
    rng = random.Random(seed)
    monkeypatch.setattr(MaildirMailbox, "snapshot_delta", rng.choice([0, 3, 2000]))
    mlist = _storage(tmp_path)
    keywords = [[], ["\\Seen"], ["\\Seen", "\\Flagged"], ["\\Deleted"], ["$Junk"],
                ["\\Seen", f"kw{rng.randrange(6)}"]]
    with _open(mlist) as writer:
        for i in range(40):
            writer.append(b"Subject: %d\n\nx\n" % i, rng.choice(keywords[:4]))
    packed_seen = 0
    for _ in range(40):
        with _open(mlist) as writer:
            op = rng.randrange(4)
            uids = list(writer.uids)
            if op == 0:
                writer.append(b"Subject: more\n\nx\n", rng.choice(keywords))
            elif op == 1 and uids:
                writer.store(rng.sample(uids, min(len(uids), rng.randrange(1, 6))),
                             rng.choice("+-="), rng.choice(keywords))
            elif op == 2 and uids:
                writer.store(rng.sample(uids, min(len(uids), 3)), "+", ["\\Deleted"])
                writer.expunge()
            elif uids:
                writer.store(uids[: rng.randrange(len(uids))], "+", ["\\Seen"])
        for _ in range(rng.choice([1, 2])):  # a second SELECT: the first may have saved
            box = _open(mlist)
            packed_seen += box._packed is not None
            exists, unseen = len(box), box.first_unseen()
            got = _columns(box)
            walked = Mailbox.first_unseen(box)
            box.close()
            want, want_unseen = _by_rows(mlist, box._box)
            assert got == want
            assert (exists, unseen) == (len(want[0]), want_unseen) == (len(got[0]), walked)
    assert packed_seen or MaildirMailbox.snapshot_delta == 2000
    mlist.close()


def test_a_packed_view_stays_the_view_of_its_select(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session expunges, flags, appends and saves a newer snapshot while a SELECTed
    view is still packed: the view unpacked afterwards is the one the client was told about
    and the next sync reports exactly those changes."""
    mlist = _storage(tmp_path)
    with _open(mlist) as box:
        for i in range(30):
            box.append(b"Subject: %d\n\nx\n" % i, ["\\Seen"] if i % 4 else [])
    mlist.index.db.execute("DELETE FROM snapshot")
    _open(mlist).close()  # a full load: saves the snapshot
    view = _open(mlist)
    before, before_unseen = _by_rows(mlist, view._box)
    assert view._packed is not None  # nothing changed since the snapshot
    assert (len(view), view.first_unseen()) == (30, before_unseen)
    monkeypatch.setattr(MaildirMailbox, "snapshot_delta", 0)
    with _open(mlist) as other:
        other.store(list(other.uids[:5]), "+", ["\\Deleted"])
        other.expunge()
        other.store([other.uids[-1]], "+", ["\\Flagged"])
        other.append(b"Subject: late\n\nx\n")
    _open(mlist).close()  # saves a newer snapshot over the file the view still has open
    assert _columns(view) == before
    changes = view.sync()
    assert changes.expunged == before[0][:5]
    assert changes.new == 1
    assert changes.flags_changed == [before[0][-1]]
    now, now_unseen = _by_rows(mlist, view._box)
    assert _columns(view) == now
    assert view.first_unseen() == now_unseen
    view.close()
    mlist.close()


@pytest.mark.parametrize("damage", ["truncate", "token", "other-box", "missing", "garbage"])
def test_a_file_the_row_does_not_vouch_for_is_not_believed(damage: str,
                                                           tmp_path: Path) -> None:
    mlist = _storage(tmp_path)
    with _open(mlist) as box:
        for i in range(20):
            box.append(b"Subject: %d\n\nx\n" % i, ["\\Seen"] if i % 3 else [])
        key = box._box
    mlist.index.db.execute("DELETE FROM snapshot")
    with _open(mlist) as box:  # a full load: the snapshot now covers all 20
        assert box._packed is None
    want = _by_rows(mlist, key)
    with _open(mlist) as box:
        assert box._packed is not None
    path = mlist.index.view_path(key)
    data = Path(path).read_bytes()
    if damage == "truncate":
        Path(path).write_bytes(data[:-40])
    elif damage == "token":
        Path(path).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "other-box":
        other = mlist.index.box("elsewhere")
        assert other is not None
        mlist.index.put_snapshot(other.id, 1, b"\x01\x00\x00\x00", b"\x00", flag_width=1,
                                 modseqs=b"\x01" + b"\x00" * 7, first_unseen=0)
        os.replace(mlist.index.view_path(other.id), path)
    elif damage == "missing":
        os.unlink(path)
    else:
        Path(path).write_bytes(b"\x00" * len(data))
    with _open(mlist) as box:
        assert box._packed is None
        assert (_columns(box), box.first_unseen()) == want
    mlist.close()


def test_no_snapshot_file_outlives_its_mailbox(tmp_path: Path) -> None:
    mlist = _storage(tmp_path)
    mlist.create("Sub")
    with mlist.open("Sub") as box:
        box.append(b"Subject: x\n\nx\n")
        key = box._box  # type: ignore[attr-defined]
    mlist.open("Sub").close()
    assert os.path.exists(mlist.index.view_path(key))
    mlist.delete("Sub")
    assert not os.path.exists(mlist.index.view_path(key))
    mlist.close()


def _cold_store(root: Path, rng: random.Random) -> None:
    """A Maildir as Dovecot and others leave it: flags and keyword letters in ``cur/``,
    ``new/`` mail, a uidlist whose records partly lost their files."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot-keywords").write_text("0 $Junk\n1 work\n3 later\n")
    letters = ["", "S", "RS", "FS", "ST", "Sa", "Sbd", "abd", "DS", "Sz"]
    bases = []
    for i in range(300):
        data = b"Subject: %d\n\n" % i + b"x\n" * rng.randrange(4)
        vsize = len(data) + data.count(b"\n")
        base = f"17000{i:05d}.M{i}P7.host,S={len(data)},W={vsize}"
        bases.append(base)
        if rng.random() < 0.1:
            (root / "new" / base).write_bytes(data)
        else:
            (root / "cur" / f"{base}:2,{rng.choice(letters)}").write_bytes(data)
    records = [f"{uid} :{base}" for uid, base in enumerate(bases[:200], start=1)]
    records[3:3] = ["4 :16999.gone.host,S=1,W=1"]
    records = [f"{uid} {rec.split(' ', 1)[1]}" for uid, rec in enumerate(records, start=1)]
    (root / "dovecot-uidlist").write_text(
        "3 V1234 N210 Gabcdef\n" + "\n".join(records) + "\n")


def _index_dump(mlist: MaildirList, box: MaildirMailbox) -> tuple[object, ...]:
    rows = mlist.index.db.execute(
        "SELECT uid, fname, flags, idate, size, vsize FROM msg WHERE box=? ORDER BY uid",
        (box._box,)).fetchall()
    return (rows, mlist.index.counters(box._box), mlist.index.keywords(box._box),
            box.uidnext, box.uidvalidity, list(box.uids), list(box.flags))


def test_a_cold_sync_in_bulk_indexes_as_message_by_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dumps = []
    for bulk in (True, False):
        rng = random.Random(5)
        root = tmp_path / f"bulk{bulk}" / "Maildir"
        _cold_store(root, rng)
        if not bulk:
            monkeypatch.setattr(MaildirMailbox, "_insert_all", lambda *a: None)
        mlist = open_storage(f"maildir:{root}", home=str(root.parent))
        assert isinstance(mlist, MaildirList)
        with _open(mlist) as box:
            dumps.append(_index_dump(mlist, box))
            assert box.first_unseen() == Mailbox.first_unseen(box)
        mlist.close()
    assert dumps[0] == dumps[1]
    rows = dumps[0][0]
    assert isinstance(rows, list) and len(rows) == 300
    assert any(int(r[2]) >> 5 for r in rows)  # keyword bits came from the letters


def test_a_name_without_sizes_takes_the_slow_path(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    _cold_store(root, random.Random(3))
    data = b"Subject: bare\n\nline\n"
    (root / "cur" / "1800000000.M1P1.host:2,S").write_bytes(data)
    mlist = _storage(tmp_path)
    with _open(mlist) as box:
        assert len(box) == 301
        last = box.details([box.uids[-1]])[0]
        assert (last.size, last.vsize) == (len(data), len(data) + 3)
    mlist.close()


def test_a_view_older_than_the_first_sync_sees_its_messages(tmp_path: Path) -> None:
    """Rows of a box's first sync (modseq 2) stay out of the partial modseq index: a view
    of the still empty box (modseq 1) gets them from the rows all the same."""
    mlist = _storage(tmp_path)
    early = _open(mlist)
    assert len(early) == 0 and early.highestmodseq == 1
    root = tmp_path / "Maildir"
    for i in range(50):
        data = b"Subject: %d\n\nx\n" % i
        name = f"17100{i:05d}.M{i}P9.host,S={len(data)},W={len(data) + 3}:2,{'S' if i % 2 else ''}"
        (root / "cur" / name).write_bytes(data)
    with _open(mlist) as other:  # the bulk first sync
        assert other.highestmodseq == 2 and len(other) == 50
        want = _columns(other)
    changes = early.sync()
    assert changes.new == 50
    assert _columns(early) == want
    early.store([early.uids[0]], "+", ["\\Flagged"])
    with _open(mlist) as later:
        assert later.highestmodseq == 3
        assert later.index.changed_since(later._box, 2) == [(early.uids[0], FLAGGED, 3)]
    early.close()
    mlist.close()


def test_two_names_of_one_base_in_new_give_one_message(tmp_path: Path) -> None:
    """``new/`` holding the same base twice (with and without an info part): moved once,
    indexed once, nothing lost."""
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    data = b"Subject: twice\n\nx\n"
    base = f"1700000000.M1P1.host,S={len(data)},W={len(data) + 3}"
    (root / "new" / base).write_bytes(data)
    (root / "new" / f"{base}:2,").write_bytes(data)
    (root / "new" / "1700000001.M2P1.host").write_bytes(data)
    mlist = _storage(tmp_path)
    with _open(mlist) as box:
        assert len(box) == 2
        assert [d.size for d in box.details(box.uids)] == [len(data)] * 2
    with _open(mlist) as box:
        assert len(box) == 2
    mlist.close()
