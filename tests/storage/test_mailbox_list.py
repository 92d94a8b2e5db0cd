"""The mailbox list: LIST patterns and attributes, create/delete/rename, subscriptions, the
fs layout and CONTROL=/INDEX= locations (checked against Dovecot where it has an answer)."""

from __future__ import annotations

import imaplib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import (
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    QuotaExceeded,
    StorageError,
    open_storage,
)
from cote.storage.index import NAME as INDEX_NAME
from cote.storage.maildir.list import MaildirList
from tests.storage.conftest import as_vmail, cote_state, imap_state
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir


@pytest.fixture
def home() -> Iterator[Path]:
    d = server_dir("storage-list")
    yield d
    remove_dir(d)


def _attrs(ml: MaildirList, pattern: str = "*", **kw: bool) -> dict[str, set[str]]:
    return {i.name: set(i.attributes) for i in ml.list(pattern, **kw)}


def test_list_patterns_and_children_attributes(home: Path) -> None:
    ml = MaildirList(f"maildir:{home}/Maildir")
    for name in ("Work.Projects.Alpha", "Archive", "Archive.2024"):
        ml.create(name)
    assert _attrs(ml) == {
        "INBOX": {"\\HasNoChildren"}, "Archive": {"\\HasChildren"},
        "Archive.2024": {"\\HasNoChildren"}, "Work": {"\\Noselect", "\\HasChildren"},
        "Work.Projects": {"\\Noselect", "\\HasChildren"},
        "Work.Projects.Alpha": {"\\HasNoChildren"}}
    assert set(_attrs(ml, "%")) == {"INBOX", "Archive", "Work"}
    assert set(_attrs(ml, "Work.%")) == {"Work.Projects"}
    assert set(_attrs(ml, "inbox")) == {"INBOX"}
    assert set(_attrs(ml, "*Alpha")) == {"Work.Projects.Alpha"}
    with pytest.raises(MailboxExists):
        ml.create("Archive")
    with pytest.raises(InvalidName):
        ml.create("bad/name")
    with pytest.raises(MailboxNotFound):
        ml.open("Work")  # \Noselect in Maildir++: no directory


def test_subscriptions_and_nonexistent(home: Path) -> None:
    ml = MaildirList(f"maildir:{home}/Maildir")
    ml.create("Lists.Python")
    ml.subscribe("Lists.Python")
    ml.subscribe("INBOX")
    with pytest.raises(MailboxNotFound):
        ml.subscribe("Nope")
    ml.delete("Lists.Python")
    assert _attrs(ml, "*", subscribed=True) == {
        "INBOX": {"\\Subscribed", "\\HasNoChildren"},
        "Lists.Python": {"\\Subscribed", "\\NonExistent"}}
    ml.unsubscribe("Lists.Python")
    ml.unsubscribe("never-subscribed")
    assert ml.subscriptions() == ["INBOX"]
    assert (home / "Maildir" / "subscriptions").read_bytes() == b"V\t2\n\nINBOX\n"


def test_delete_and_rename_rules(home: Path) -> None:
    ml = MaildirList(f"maildir:{home}/Maildir")
    ml.create("A.B.C")
    box = ml.open("A.B.C")
    uid = box.append(b"Subject: keep me\n\n.\n", ["\\Seen"])
    uidvalidity = box.uidvalidity
    with pytest.raises(StorageError) as e:
        ml.delete("INBOX")
    assert e.value.code == "CANNOT"
    with pytest.raises(StorageError) as e:
        ml.rename("INBOX", "Old")
    assert e.value.code == "CANNOT"
    with pytest.raises(MailboxNotFound):
        ml.delete("A")
    ml.rename("A", "Z")  # a \Noselect parent: its children move
    assert set(_attrs(ml)) == {"INBOX", "Z", "Z.B", "Z.B.C"}
    moved = ml.open("Z.B.C")
    assert list(moved.uids) == [uid] and moved.uidvalidity == uidvalidity
    assert moved.read_message(uid) == b"Subject: keep me\n\n.\n"
    with pytest.raises(StorageError):
        ml.rename("Z", "Z.B.Q")
    ml.delete("Z.B.C")
    assert set(_attrs(ml)) == {"INBOX"}


def test_special_use_and_utf8_names(home: Path) -> None:
    ml = open_storage(f"maildir:{home}/Maildir", special_use={"Sent": "\\Sent"})
    ml.create("Sent")
    ml.create("Entwürfe")
    assert "\\Sent" in _attrs(ml)["Sent"]
    assert (home / "Maildir" / ".Entw&APw-rfe").is_dir()
    utf8 = open_storage(f"maildir:{home}/U:UTF-8")
    utf8.create("Entwürfe")
    assert (home / "U" / ".Entwürfe").is_dir() and "Entwürfe" in _attrs(utf8)


def test_control_and_index_locations(home: Path) -> None:
    loc = "maildir:~/Maildir:CONTROL=~/control:INDEX=~/index"
    ml = open_storage(loc, home=str(home))
    ml.create("Box")
    box = ml.open("Box")
    box.append(b"Subject: x\n\n.\n", ["kw"])
    assert (home / "control" / ".Box" / "dovecot-uidlist").exists()
    assert (home / "control" / ".Box" / "dovecot-keywords").exists()
    assert not (home / "Maildir" / ".Box" / "dovecot-uidlist").exists()
    assert (home / "index" / INDEX_NAME).exists()
    ml.subscribe("Box")
    assert (home / "control" / "subscriptions").exists()
    assert (home / "control" / "dovecot-uidvalidity").exists()


def test_quota_hook_refuses_before_anything_is_visible(home: Path) -> None:
    class SmallQuota:
        def __init__(self) -> None:
            self.used = 0

        def check(self, mailbox: str, add_bytes: int, add_count: int) -> None:
            if self.used + add_bytes > 100:
                raise QuotaExceeded()

        def changed(self, mailbox: str, delta_bytes: int, delta_count: int) -> None:
            self.used += delta_bytes

    quota = SmallQuota()
    ml = open_storage(f"maildir:{home}/Maildir", quota=quota)
    box = ml.open("INBOX")
    box.append(b"x" * 60)
    with pytest.raises(QuotaExceeded):
        box.append(b"y" * 60)
    assert quota.used == 60
    box.sync()
    assert len(box) == 1 and os.listdir(home / "Maildir" / "tmp") == []
    box.store([box.uids[0]], "+", ["\\Deleted"])
    box.expunge()
    assert quota.used == 0


def test_pop3_uidls_from_the_uidlist(home: Path) -> None:
    root = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "100.M1P1.old:2,S").write_bytes(b"Subject: migrated\n\n.\n")
    (root / "dovecot-uidlist").write_bytes(b"3 V7 N2\n1 P0a1b2c3d :100.M1P1.old\n")
    box = open_storage(f"maildir:{root}").open("INBOX")
    assert list(box.uids) == [1] and box.uidvalidity == 7
    assert box.pop3_uidls([1]) == {1: "0a1b2c3d"}


@pytest.fixture(scope="module", params=["LAYOUT=fs", "LAYOUT=fs:DIRNAME=mAildir"])
def fs_dovecot(request: pytest.FixtureRequest) -> Iterator[DovecotOracle]:
    dc = DovecotOracle(users={"user1": "pass1"})
    dc.mail_location = f"maildir:{dc.dir}/mail/%u:{request.param}"
    dc.start()
    yield dc
    dc.cleanup()


@pytest.mark.oracle
def test_fs_layout_matches_dovecot(fs_dovecot: DovecotOracle) -> None:
    port = fs_dovecot.ports["imap"]
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login("user1", "pass1")
    for name in ("Work/Projects/Alpha", "Archive"):
        assert imap.create(name)[0] == "OK"
    imap.append("Archive", r"(\Seen)", None, b"Subject: a\r\n\r\n.\r\n")
    imap.append("INBOX", r"(\Answered)", None, b"Subject: i\r\n\r\n.\r\n")
    imap.subscribe("Work")
    imap.logout()
    root = fs_dovecot.user_maildir("user1")
    options = fs_dovecot.mail_location.rsplit("%u:", 1)[1]
    with as_vmail():
        ml = MaildirList(f"maildir:{root}:{options}")
        assert cote_state(ml) == imap_state(port, "user1", "pass1")
        ml.create("Cote/Nested")
        ml.open("Cote/Nested").append(b"Subject: c\r\n\r\n.\r\n", ["\\Flagged"])
        ml.rename("Work", "Job")
        with pytest.raises(StorageError):
            ml.delete("Job")  # \Noselect with children, as Dovecot answers
        mine = cote_state(ml)
        ml.close()
    assert imap_state(port, "user1", "pass1") == mine
    assert mine["boxes"]["Cote/Nested"]["messages"] == [(1, frozenset({"\\Flagged"}))]
    assert mine["boxes"]["INBOX"]["messages"] == [(1, frozenset({"\\Answered"}))]
    if "DIRNAME" in options:
        assert (root / "Cote" / "Nested" / "mAildir" / "dovecot-uidlist").exists()


def test_a_store_the_user_cannot_write_is_readable_and_errors_are_storage_errors(
        home: Path) -> None:
    root = home / "Maildir"
    ml = MaildirList(f"maildir:{root}")
    uid = ml.open("INBOX").append(b"Subject: shared\n\n.\n", ["\\Seen"])
    ml.close()
    (root / INDEX_NAME).unlink()
    for d, _, files in os.walk(root):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    with as_vmail():
        shared = open_storage(f"maildir:{root}")  # its index cannot live there: in memory
        box = shared.open("INBOX", readonly=True)
        assert list(box.uids) == [uid] and box.flag_names(box.flags[0]) == ["\\Seen"]
        writable = shared.open("INBOX")
        with pytest.raises(StorageError) as e:
            writable.append(b"Subject: no\n\n.\n")
        assert e.value.code == "NOPERM"
        with pytest.raises(StorageError) as e:
            shared.create("New")
        assert e.value.code == "NOPERM"
    assert not (root / INDEX_NAME).exists()
