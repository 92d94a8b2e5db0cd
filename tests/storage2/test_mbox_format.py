"""mbox parsing and writing corner cases: Content-Length right and wrong, From_ lines in
bodies, hidden metadata headers, UIDs assigned to foreign mail, lock settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cote.storage import StorageError, open_storage
from cote.storage import flags as F
from cote.storage.mbox import format as fmt
from cote.storage.mbox.list import MboxList, MboxSettings
from cote.storage.mbox.locking import parse_methods

FROM1 = b"From a@b  Wed Jan 01 10:00:00 2020\n"
FROM2 = b"From c@d  Thu Jan  2 11:12:13 2020\n"


def test_from_line_dates() -> None:
    assert fmt.from_date(FROM1.strip()) == 1577872800.0
    assert fmt.from_date(FROM2.strip()) == 1577963533.0
    assert fmt.from_date(b"From x Sat Feb  1 00:00 2020") == 1580515200.0
    assert fmt.from_date(b"From me to you") == 0.0
    assert fmt.from_line("u@h", 1577872800.0) == FROM1.replace(b"a@b", b"u@h")


def test_content_length_delimits_unquoted_from_lines() -> None:
    body = b"line\n\nFrom here on\n"
    data = (FROM1 + b"Subject: a\nContent-Length: %d\n\n" % len(body) + body + b"\n"
            + FROM2 + b"Subject: b\n\nb\n\n")
    p = fmt.parse(data)
    assert len(p.records) == 2
    assert fmt.visible(data, p.records[0]) == b"Subject: a\n\n" + body
    assert fmt.visible(data, p.records[1]) == b"Subject: b\n\nb\n"


def test_wrong_content_length_falls_back_to_from_lines() -> None:
    data = (FROM1 + b"Subject: a\nContent-Length: 3\n\nhello world\n\n"
            + FROM2 + b"Subject: b\n\nb\n\n")
    p = fmt.parse(data)
    assert [fmt.visible(data, r) for r in p.records] == [
        b"Subject: a\n\nhello world\n", b"Subject: b\n\nb\n"]


def test_metadata_is_read_and_hidden() -> None:
    data = (FROM1 + b"Subject: a\nX-IMAPbase: 123 0000000009 one two\nX-UID: 7\n"
            b"Status: RO\nX-Status: AFTD\nX-Keywords: two\n  continued\nContent-Length: 2\n\n"
            b"x\n\n")
    p = fmt.parse(data)
    r = p.records[0]
    assert (p.uidvalidity, p.last_uid, p.keywords) == (123, 9, ["one", "two"])
    assert r.uid == 7 and r.old and r.keywords == ("two", "continued")
    assert r.bits == F.SEEN | F.ANSWERED | F.FLAGGED | F.DRAFT | F.DELETED
    assert fmt.visible(data, r) == b"Subject: a\n\nx\n"
    assert p.base_field is not None
    assert data[p.base_field[0]:p.base_field[1]] == b"0000000009"


def test_not_an_mbox() -> None:
    with pytest.raises(fmt.MboxFormatError):
        fmt.parse(b"Subject: no From_ line\n\n")


def test_written_entry_round_trips() -> None:
    msg = b"Subject: s\r\nStatus: RO\r\nX-UID: 99\r\n\r\nFrom inside\r\nlast"
    e = fmt.entry("u@h", 1577872800.0, msg, uid=5, bits=F.SEEN, keywords=["k"], old=False,
                  base=(42, 5, ["k"]))
    p = fmt.parse(e)
    assert (p.uidvalidity, p.last_uid) == (42, 5)
    r = p.records[0]
    assert (r.uid, r.bits, r.keywords, r.old) == (5, F.SEEN, ("k",), False)
    # the client's own look-alike headers are not kept: they would lie about the state
    assert fmt.visible(e, r) == b"Subject: s\n\nFrom inside\nlast\n"


def test_foreign_mbox_gets_uids_and_keeps_them(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_bytes(FROM1 + b"Subject: a\n\na\n\n" + FROM2 + b"Subject: b\n\nb\n")
    ml = open_storage(f"mbox:{tmp_path}/mail:INBOX={inbox}")
    with ml.open("INBOX") as box:
        assert list(box.uids) == [1, 2] and box.uidnext == 3
        uidv = box.uidvalidity
        assert box.details([1])[0].internal_date == 1577872800.0
    text = inbox.read_bytes()
    assert b"X-IMAPbase: %d 0000000002" % uidv in text and b"X-UID: 2\n" in text
    with ml.open("INBOX") as box:
        assert list(box.uids) == [1, 2] and box.uidvalidity == uidv
        assert box.recent_uids() == []  # the first session saw them
        assert box.append(b"Subject: c\n\nc\n") == 3
    assert b"X-IMAPbase: %d 0000000003" % uidv in inbox.read_bytes()


def test_readonly_session_changes_nothing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    raw = FROM1 + b"Subject: a\n\na\n\n"
    inbox.write_bytes(raw)
    ml = MboxList(f"mbox:{tmp_path}/mail:INBOX={inbox}")
    with ml.open("INBOX", readonly=True) as box:
        assert list(box.uids) == [1]
        with pytest.raises(StorageError):
            box.store([1], "+", ["\\Seen"])
    assert inbox.read_bytes() == raw


def test_list_layout(tmp_path: Path) -> None:
    ml = MboxList(f"mbox:{tmp_path}/mail:INBOX={tmp_path}/inbox")
    ml.create("A/B")
    ml.create("Dir/")
    ml.create("Ünï")
    (tmp_path / "mail" / ".imap").mkdir()
    (tmp_path / "mail" / "A" / "B.lock").write_text("")
    got = {i.name: i.attributes for i in ml.list("*")}
    assert got == {"INBOX": {"\\HasNoChildren"}, "A": {"\\Noselect", "\\HasChildren"},
                   "A/B": {"\\NoInferiors"}, "Dir": {"\\Noselect", "\\HasNoChildren"},
                   "Ünï": {"\\NoInferiors"}}
    assert (tmp_path / "mail" / "&ANw-n&AO8-").is_file()
    path = tmp_path / "mail" / "A" / "B"
    path.write_bytes(FROM1 + b"Subject: new\n\nnew mail\n\n")
    os.utime(path, (1000, 2000))  # written after it was last read
    assert ml.list("A/B")[0].attributes == {"\\NoInferiors", "\\Marked"}
    os.utime(path, (3000, 2000))
    assert ml.list("A/B")[0].attributes == {"\\NoInferiors"}
    with pytest.raises(StorageError) as e:
        ml.delete("A")
    assert e.value.code == "INUSE"
    ml.rename("A/B", "C")
    ml.subscribe("C")
    assert ml.subscriptions() == ["C"]
    assert (tmp_path / "mail" / ".subscriptions").read_bytes() == b"V\t2\n\nC\n"


def test_lock_settings() -> None:
    assert parse_methods("fcntl dotlock", ()) == ("fcntl", "dotlock")
    assert parse_methods(None, ("flock",)) == ("flock",)
    with pytest.raises(StorageError):
        parse_methods("fcntl nosuch", ())
    s = MboxSettings.from_config({"mbox_read_locks": "flock", "mbox_write_locks":
                                  "dotlock_try flock", "mbox_lock_timeout": "10 secs"}.__getitem__)
    assert (s.read_locks, s.write_locks, s.lock_timeout) == (("flock",),
                                                              ("dotlock_try", "flock"), 10.0)


def test_flock_and_dotlock_try_work(tmp_path: Path) -> None:
    settings = MboxSettings(read_locks=("flock",), write_locks=("dotlock_try", "flock"))
    ml = MboxList(f"mbox:{tmp_path}/mail:INBOX={tmp_path}/inbox", settings=settings)
    with ml.open("INBOX") as box:
        box.append(b"Subject: a\n\na\n", ["\\Flagged"])
        box.sync()
        assert box.flag_names(box.flags[0]) == ["\\Flagged"]
    assert not (tmp_path / "inbox.lock").exists()


def test_uids_stay_ascending_in_file_order(tmp_path: Path) -> None:
    """A message with a UID below its predecessor's (or none) is renumbered after it."""
    inbox = tmp_path / "inbox"
    inbox.write_bytes(FROM1 + b"X-IMAPbase: 5 0000000003\nX-UID: 1\nSubject: a\n\na\n\n"
                      + FROM2 + b"Subject: mta\n\nm\n\n"
                      + FROM2 + b"X-UID: 2\nSubject: b\n\nb\n\n"
                      + FROM2 + b"X-UID: 3\nSubject: c\n\nc\n\n")
    ml = open_storage(f"mbox:{tmp_path}/mail:INBOX={inbox}")
    with ml.open("INBOX") as box:
        assert list(box.uids) == [1, 4, 5, 6] and box.uidnext == 7 and box.uidvalidity == 5
        assert box.read_message(4) == b"Subject: mta\n\nm\n"
    assert b"X-IMAPbase: 5 0000000006" in inbox.read_bytes()


def test_delivery_open_leaves_recent_to_the_user(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_bytes(FROM1 + b"Subject: waiting\n\nw\n\n")
    ml = open_storage(f"mbox:{tmp_path}/mail:INBOX={inbox}", user="u")
    with ml.open_for_append("INBOX") as box:
        assert box.append(b"Subject: delivered\n\nd\n") == 2
    assert b"Status: O" not in inbox.read_bytes()  # nobody has seen either message yet
    with ml.open("INBOX") as box:
        assert box.recent_uids() == [1, 2]
