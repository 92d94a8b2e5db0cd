"""Maildir details a store written by other software can have: old uidlist versions, unknown
flag letters, a message in both new/ and cur/, leftovers in tmp/, more than 26 keywords."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cote.storage import MaildirSettings, StorageError, open_storage
from cote.storage import flags as F
from cote.storage.dotlock import Dotlock
from cote.storage.maildir import uidlist as ulfile
from cote.storage.maildir.mailbox import MaildirMailbox
from tests.support.env import remove_dir, server_dir


@pytest.fixture
def root() -> Iterator[Path]:
    d = server_dir("storage-files")
    root = d / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    yield root
    remove_dir(d)


def test_v1_uidlist_is_converted_not_extended(root: Path) -> None:
    (root / "cur" / "100.a.host:2,S").write_bytes(b"Subject: 1\n\n.\n")
    (root / "cur" / "101.b.host:2,").write_bytes(b"Subject: 2\n\n.\n")
    (root / "dovecot-uidlist").write_bytes(b"1 12345 10\n4 100.a.host\n7 101.b.host\n")
    box = open_storage(f"maildir:{root}").open("INBOX")
    assert list(box.uids) == [4, 7] and box.uidvalidity == 12345 and box.uidnext == 10
    uid = box.append(b"Subject: 3\n\n.\n")
    assert uid == 10
    data = (root / "dovecot-uidlist").read_bytes()
    header, *records = data.decode().splitlines()
    assert header.startswith("3 V12345 N11 G") and len(header.split()[3]) == 33
    assert records[:2] == ["4 :100.a.host", "7 :101.b.host"]
    assert records[2].startswith("10 :") and ",S=14,W=17" in records[2]


def test_unknown_flag_letters_survive_a_flag_change(root: Path) -> None:
    (root / "cur" / "200.x.host,S=14:2,SXa").write_bytes(b"Subject: x\n\n.\n")
    (root / "dovecot-keywords").write_bytes(b"0 $Label1\n")
    box = open_storage(f"maildir:{root}").open("INBOX")
    assert box.flag_names(box.flags[0]) == ["\\Seen", "$Label1"]
    box.store([box.uids[0]], "+", ["\\Flagged", "new-kw"])
    assert os.listdir(root / "cur") == ["200.x.host,S=14:2,FSXab"]
    assert (root / "dovecot-keywords").read_bytes() == b"0 $Label1\n1 new-kw\n"
    box.store([box.uids[0]], "-", ["$Label1", "\\Seen"])
    assert os.listdir(root / "cur") == ["200.x.host,S=14:2,FXb"]


def test_more_keywords_than_letters_stay_in_the_index(root: Path) -> None:
    box = open_storage(f"maildir:{root}").open("INBOX")
    uid = box.append(b"Subject: many\n\n.\n")
    names = [f"k{i:02d}" for i in range(30)]
    box.store([uid], "+", names)
    (name,) = os.listdir(root / "cur")
    assert name.endswith(":2," + "".join(chr(ord("a") + i) for i in range(26)))
    other = open_storage(f"maildir:{root}").open("INBOX")
    assert set(other.flag_names(other.flags[0])) == set(names)
    assert F.keyword_indexes(other.flags[0]) == list(range(30))


def test_same_message_in_new_and_cur_counts_once(root: Path) -> None:
    (root / "new" / "300.d.host").write_bytes(b"Subject: d\n\n.\n")
    (root / "cur" / "300.d.host:2,S").write_bytes(b"Subject: d\n\n.\n")
    box = open_storage(f"maildir:{root}").open("INBOX")
    assert len(box) == 1 and box.flag_names(box.flags[0]) == ["\\Seen"]


def test_old_leftovers_in_tmp_are_removed(root: Path) -> None:
    old, fresh = root / "tmp" / "1.crashed.host", root / "tmp" / "2.writing.host"
    old.write_bytes(b"half a message")
    fresh.write_bytes(b"being written")
    long_ago = time.time() - 40 * 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(root / "tmp", (time.time() - 9 * 3600, time.time()))
    (root / "new" / "3.new.host").write_bytes(b"Subject: n\n\n.\n")  # makes the sync lock
    open_storage(f"maildir:{root}").open("INBOX")
    assert not old.exists() and fresh.exists()


def test_mail_fsync_modes_and_bad_values(root: Path) -> None:
    for mode in ("always", "never"):
        box = open_storage(f"maildir:{root}", mail_fsync=mode).open("INBOX")
        assert box.append(f"Subject: {mode}\n\n.\n".encode()) > 0
    with pytest.raises(Exception, match="mail_fsync"):
        open_storage(f"maildir:{root}", mail_fsync="sometimes")


def _settings(**kw: str) -> MaildirSettings:
    return MaildirSettings.from_config(lambda name: kw.get(name))


def test_dovecot_maildir_settings(root: Path) -> None:
    s = _settings(mail_fsync="always", maildir_copy_with_hardlinks="no",
                  maildir_very_dirty_syncs="yes", maildir_empty_new="yes",
                  mail_max_lock_timeout="2 secs")
    assert (s.fsync, s.copy_with_hardlinks, s.very_dirty_syncs, s.empty_new,
            s.max_lock_timeout) == ("always", False, True, True, 2.0)
    assert _settings() == MaildirSettings()
    with pytest.raises(StorageError):
        _settings(maildir_empty_new="perhaps")
    with pytest.raises(StorageError):
        _settings(mail_max_lock_timeout="soon")


def test_empty_new_moves_even_for_examine(root: Path) -> None:
    (root / "new" / "1.a.host").write_bytes(b"Subject: a\n\n.\n")
    open_storage(f"maildir:{root}").open("INBOX", readonly=True)
    assert os.listdir(root / "new") == ["1.a.host"]
    ml = open_storage(f"maildir:{root}", config={"maildir_empty_new": "yes"}.get)
    ml.open("INBOX", readonly=True)
    assert os.listdir(root / "new") == [] and os.listdir(root / "cur") == ["1.a.host:2,"]


def test_copy_with_and_without_hardlinks(root: Path) -> None:
    for links in ("yes", "no"):
        ml = open_storage(f"maildir:{root}", config={"maildir_copy_with_hardlinks": links}.get)
        ml.create(f"Copy-{links}")
        src = ml.open("INBOX")
        uid = src.append(b"Subject: c\n\n.\n", ["\\Seen", "kw"])
        dest = ml.open(f"Copy-{links}")
        ((_, new_uid),) = src.copy([uid], dest)
        dest.sync()
        assert dest.read_message(new_uid) == b"Subject: c\n\n.\n"
        assert set(dest.flag_names(dest.flags[0])) == {"\\Seen", "kw"}
        (name,) = os.listdir(root / f".Copy-{links}" / "cur")
        nlink = os.stat(root / f".Copy-{links}" / "cur" / name).st_nlink
        assert nlink == (2 if links == "yes" else 1)


def test_own_changes_are_trusted_and_refreshed_once_when_quiet(root: Path) -> None:
    """After cote's own STORE/EXPUNGE/APPEND the next sync lists nothing (the index matches
    the disk); without maildir_very_dirty_syncs the first sync after the directories have
    been quiet for the dirty window lists the mailbox once (Dovecot's delayed refresh),
    with it never."""
    for mode, refreshed in (("no", True), ("yes", False)):
        ml = open_storage(f"maildir:{root}", config={"maildir_very_dirty_syncs": mode}.get)
        box = ml.open("INBOX")
        uid = box.append(b"Subject: v\n\n.\n", ["\\Seen"])
        time.sleep(0.1)
        box.sync()
        time.sleep(0.1)
        box.sync()  # now the index signature is trusted
        scans = box.scans
        box.store([uid], "+", ["\\Flagged"])
        box.sync()
        box.store([uid], "+", ["\\Deleted"])
        box.expunge()
        box.sync()
        box.append(b"Subject: w\n\n.\n", ["\\Seen"])
        box.sync()
        assert box.scans == scans, mode
        time.sleep(0.1)  # quiet past the dirty window
        box.sync()
        box.sync()
        assert box.scans == scans + refreshed, mode
        assert len(box) == len(set(box.uids))


def test_a_delivery_during_our_own_change_is_seen_once_quiet(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer's delivery that lands while cote is busy with a STORE (after its
    check, before it records the new signature: the signature then includes it) is found
    by the refresh once the directories are quiet, even when the change took so long that
    the directories no longer look recently changed when it ends."""
    ml = open_storage(f"maildir:{root}", config={"maildir_very_dirty_syncs": "no"}.get)
    box = ml.open("INBOX")
    uid = box.append(b"Subject: v\n\n.\n", ["\\Seen"])
    time.sleep(0.1)
    box.sync()
    before = len(box)
    rename = type(box)._rename_for_flags

    def rename_and_deliver(self: object, *args: object) -> object:
        renamed = rename(self, *args)  # type: ignore[arg-type]
        (root / "new" / "1.M1P1.elsewhere").write_bytes(b"Subject: meanwhile\n\nx\n")
        time.sleep(0.12)  # a slow own change: both directories look settled afterwards
        return renamed

    monkeypatch.setattr(type(box), "_rename_for_flags", rename_and_deliver)
    box.store([uid], "+", ["\\Flagged"])
    monkeypatch.undo()
    time.sleep(0.1)
    box.sync()
    assert len(box) == before + 1


def test_the_quiet_refresh_lists_but_reads_no_uidlist_when_only_times_moved(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refresh after cote's own change lists the directories; when they name exactly
    the index's files and the uidlist is the one the index has, nothing else is read."""
    ml = open_storage(f"maildir:{root}", config={"maildir_very_dirty_syncs": "no"}.get)
    box = ml.open("INBOX")
    uid = box.append(b"Subject: q\n\n.\n", ["\\Seen"])
    time.sleep(0.1)
    box.sync()
    box.store([uid], "+", ["\\Flagged"])
    reads: list[int] = []
    read = MaildirMailbox._read_uidlist

    def counted(self: MaildirMailbox) -> object:
        reads.append(1)
        return read(self)

    monkeypatch.setattr(MaildirMailbox, "_read_uidlist", counted)
    time.sleep(0.1)
    scans = box.scans
    box.sync()
    box.sync()
    assert (box.scans - scans, reads) == (1, [])


def test_a_uidlist_changed_elsewhere_is_read_even_when_the_names_are_the_same(
        root: Path) -> None:
    """Another program raising the uidlist's next UID (same records, same files): the
    refresh reads the uidlist, as its signature changed, and UIDNEXT follows."""
    ml = open_storage(f"maildir:{root}", config={"maildir_very_dirty_syncs": "no"}.get)
    box = ml.open("INBOX")
    box.append(b"Subject: n\n\n.\n", ["\\Seen"])
    time.sleep(0.1)
    box.sync()
    path = root / "dovecot-uidlist"
    head, rest = path.read_text().split("\n", 1)
    raised = box.uidnext + 10
    with Dotlock(str(path)):  # rewritten as Dovecot does: a new file renamed over it
        tmp = root / "dovecot-uidlist.new"
        tmp.write_text(" ".join(f"N{raised}" if f[0] == "N" else f for f in head.split())
                       + "\n" + rest)
        os.rename(tmp, path)
    time.sleep(0.1)
    box.sync()
    assert box.uidnext == raised


def test_a_rename_by_a_mail_client_during_our_own_change_is_seen_once_quiet(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mail client renaming a file (a flag change, no lock) while cote's STORE runs: the
    names then differ from the index's, and the refresh once quiet finds the change."""
    ml = open_storage(f"maildir:{root}", config={"maildir_very_dirty_syncs": "no"}.get)
    box = ml.open("INBOX")
    first = box.append(b"Subject: a\n\n.\n", ["\\Seen"])
    second = box.append(b"Subject: b\n\n.\n", ["\\Seen"])
    time.sleep(0.1)
    box.sync()
    name = next(p.name for p in (root / "cur").iterdir() if p.read_bytes().startswith(b"Subject: b"))
    rename = MaildirMailbox._rename_for_flags

    def rename_and_client(self: MaildirMailbox, *args: Any) -> object:
        renamed = rename(self, *args)
        os.rename(root / "cur" / name, root / "cur" / name.replace(":2,S", ":2,FS"))
        time.sleep(0.12)  # both directories look settled afterwards
        return renamed

    monkeypatch.setattr(MaildirMailbox, "_rename_for_flags", rename_and_client)
    box.store([first], "+", ["\\Draft"])
    monkeypatch.undo()
    time.sleep(0.1)
    changes = box.sync()
    seq = box.seq_of(second)
    assert seq is not None and second in changes.flags_changed
    assert box.flags[seq - 1] & F.FLAGGED


def _settled_box(root: Path, count: int) -> list[int]:
    """``count`` messages appended and synced by one process, its storage closed."""
    ml = open_storage(f"maildir:{root}", config={"maildir_very_dirty_syncs": "no"}.get)
    box = ml.open("INBOX")
    uids = [box.append(b"Subject: %d\n\n.\n" % i, ["\\Seen"]) for i in range(count)]
    time.sleep(0.1)
    box.sync()
    ml.close()
    return uids


def test_an_append_by_a_new_process_reads_the_uidlist_header_only(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index has every record of the uidlist: a new process appends after the header
    alone (no record parsed) and gives the next UID; the file gets exactly one line more."""
    uids = _settled_box(root, 5)
    before = (root / "dovecot-uidlist").read_bytes()
    parsed: list[int] = []
    monkeypatch.setattr(ulfile, "parse_records", lambda *a: parsed.append(1))
    box = open_storage(f"maildir:{root}").open_for_append("INBOX")
    uid = box.append(b"Subject: new\n\n.\n")
    box.close()
    monkeypatch.undo()
    after = (root / "dovecot-uidlist").read_bytes()
    assert (parsed, uid) == ([], uids[-1] + 1)
    assert after.startswith(before) and after[len(before):].startswith(b"%d :" % uid)
    assert after.count(b"\n") == before.count(b"\n") + 1


def test_an_append_after_the_header_rewrites_a_torn_uidlist_whole(root: Path) -> None:
    """A torn last line (a writer that died mid-line): the file is rewritten with every
    record it had and the new one, as when the whole file was read first."""
    uids = _settled_box(root, 3)
    path = root / "dovecot-uidlist"
    with path.open("ab") as f:
        f.write(b"99 :torn")
    time.sleep(0.1)
    synced = open_storage(f"maildir:{root}")  # the index now has the torn file's signature
    synced.open("INBOX").close()
    synced.close()
    box = open_storage(f"maildir:{root}").open_for_append("INBOX")
    uid = box.append(b"Subject: new\n\n.\n")
    box.close()
    records = [int(line.split()[0]) for line in path.read_text().splitlines()[1:]]
    assert records == [*uids, uid] and uid == uids[-1] + 1


def test_a_uidlist_deleted_after_its_header_was_read_is_written_from_the_index(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone deletes dovecot-uidlist (without the lock) between the header read and the
    append: it is written again with every record the index has, UIDVALIDITY kept."""
    uids = _settled_box(root, 3)
    path = root / "dovecot-uidlist"
    header = path.read_text().split()[:2]
    read_header = MaildirMailbox._uidlist_header

    def then_deleted(self: MaildirMailbox, sig: str) -> object:
        ul = read_header(self, sig)
        path.unlink()
        return ul

    monkeypatch.setattr(MaildirMailbox, "_uidlist_header", then_deleted)
    box = open_storage(f"maildir:{root}").open_for_append("INBOX")
    uid = box.append(b"Subject: new\n\n.\n")
    box.close()
    lines = path.read_text().splitlines()
    assert lines[0].split()[:2] == header
    assert [int(line.split()[0]) for line in lines[1:]] == [*uids, uid]


def test_an_append_reads_the_whole_uidlist_when_another_writer_extended_it(
        root: Path) -> None:
    """A record the index has not seen (another writer's, under the lock): the header
    alone would not tell the next UID, so the whole file is read."""
    uids = _settled_box(root, 3)
    (root / "cur" / "7.M7P7.elsewhere:2,").write_bytes(b"Subject: other\n\n.\n")
    with (root / "dovecot-uidlist").open("ab") as f:
        f.write(b"%d :7.M7P7.elsewhere\n" % (uids[-1] + 5))
    box = open_storage(f"maildir:{root}").open_for_append("INBOX")
    uid = box.append(b"Subject: new\n\n.\n")
    box.close()
    assert uid == uids[-1] + 6


def test_lock_wait_is_bounded_by_mail_max_lock_timeout(root: Path) -> None:
    ml = open_storage(f"maildir:{root}", config={"mail_max_lock_timeout": "1"}.get)
    box = ml.open("INBOX")
    uid = box.append(b"Subject: l\n\n.\n")
    holder = Dotlock(str(root / "dovecot-uidlist"))
    holder.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageError) as e:
            box.store([uid], "+", ["\\Seen"])
        assert e.value.code == "INUSE" and 0.9 < time.monotonic() - t0 < 5
    finally:
        holder.release()
    assert box.store([uid], "+", ["\\Seen"]).changed == [uid]


def test_uidlist_is_rewritten_once_enough_records_are_dead(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Expunged messages' records stay in dovecot-uidlist until ``rewrite_min_dead`` of them
    are dead; then the file is rewritten with the live ones only (UIDs and N kept)."""
    monkeypatch.setattr(MaildirMailbox, "rewrite_min_dead", 3)
    box = open_storage(f"maildir:{root}").open("INBOX")
    uids = [box.append(b"Subject: %d\n\n.\n" % i) for i in range(5)]

    def records() -> list[int]:
        lines = (root / "dovecot-uidlist").read_text().splitlines()
        return [int(line.split()[0]) for line in lines[1:]]

    box.expunge_uids(uids[:2])
    assert records() == uids  # two dead: kept
    box.expunge_uids(uids[2:3])
    assert records() == uids[3:]  # three dead: rewritten without them
    assert (root / "dovecot-uidlist").read_text().split()[2] == f"N{uids[-1] + 1}"
    box.close()
