"""coteadm's mail commands against doveadm's on the same store (run as the user)."""

from __future__ import annotations

import os

import pytest

from tests.adm.conftest import Pair


def lines(text: str) -> list[str]:
    return sorted(text.splitlines())


@pytest.fixture(scope="module")
def stored(pair: Pair) -> Pair:
    for subject in ("hello", "second", "third"):
        r = pair.doveadm("save", "-u", "user1",
                         stdin=f"Subject: {subject}\nFrom: a@example.com\n\nbody {subject}\n")
        assert r.rc == 0, r.err
    assert pair.doveadm("mailbox", "create", "-u", "user1", "Work", "Work.Sub").rc == 0
    assert pair.doveadm("flags", "add", "-u", "user1", "\\Seen \\Flagged $Label1", "mailbox",
                        "INBOX", "UID", "2").rc == 0
    return pair


def test_list(stored: Pair) -> None:
    for args in (("mailbox", "list", "-u", "user1"), ("mailbox", "list", "-u", "user1", "W*"),
                 ("mailbox", "list", "-A"), ("-f", "tab", "mailbox", "list", "-A"),
                 ("-f", "tab", "mailbox", "list", "-u", "user1")):
        ours, theirs = stored.coteadm(*args), stored.doveadm(*args)
        assert (ours.rc, lines(ours.out), ours.err) == (theirs.rc, lines(theirs.out), theirs.err)
    assert "INBOX" in stored.coteadm("mailbox", "list", "-u", "user1").out


@pytest.mark.parametrize("args", [
    ("mailbox", "status", "-u", "user1", "messages", "INBOX"),
    ("mailbox", "status", "-u", "user1", "messages unseen uidnext recent", "INBOX"),
    ("mailbox", "status", "-u", "user1", "-t", "messages unseen vsize", "*"),
    ("-f", "json", "mailbox", "status", "-u", "user1", "messages uidnext", "INBOX"),
    ("-f", "tab", "mailbox", "status", "-u", "user1", "messages uidvalidity vsize", "INBOX"),
    ("mailbox", "status", "-u", "user1", "messages", "Nope"),
    ("mailbox", "status", "-u", "user1", "bogus", "INBOX"),
    ("mailbox", "list", "-u", "nouser"),
    ("mailbox", "status", "-A", "messages unseen", "INBOX"),
    ("-f", "tab", "mailbox", "status", "-A", "messages", "INBOX"),
    ("-f", "pager", "mailbox", "status", "-A", "messages", "INBOX"),
    ("-f", "json", "mailbox", "status", "-A", "messages", "INBOX"),
    ("fetch", "-A", "uid flags", "mailbox", "INBOX", "ALL"),
    ("-o", "base_dir=/nonexistent", "mailbox", "list", "-u", "user1"),
    ("mailbox", "status", "-u", "user1", "-t", "uidnext", "INBOX"),
    ("mailbox", "list", "-u", "user1", "-s"),
    ("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "savedbefore", "1d"),
    ("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "SEEN"),
    ("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "before", "2020-01-01"),
    ("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "since", "2020-01-01", "UID", "1:2"),
    ("fetch", "-u", "user1", "uid hdr.subject size.virtual", "mailbox", "INBOX", "ALL"),
    ("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "UID", "2:3"),
    ("fetch", "-u", "user1", "uid flags seq", "mailbox", "INBOX", "ALL"),
    ("fetch", "-u", "user1", "uid flags", "mailbox", "INBOX", "FLAGGED"),
    ("fetch", "-u", "user1", "user mailbox uid size.physical date.saved", "mailbox", "INBOX",
     "ALL"),
    ("-f", "json", "fetch", "-u", "user1", "uid date.received.unixtime hdr.from", "mailbox",
     "INBOX", "ALL"),
    ("fetch", "-u", "user1", "seq uid", "mailbox", "INBOX", "2"),
    ("-f", "tab", "fetch", "-u", "user1", "uid hdr.subject", "mailbox", "INBOX", "UNSEEN"),
    ("fetch", "-u", "user1", "uid", "mailbox", "Nope", "ALL"),
    ("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "BOGUS"),
    ("fetch", "-u", "user1", "bogus", "mailbox", "INBOX", "ALL"),
    ("expunge", "-u", "user1", "mailbox", "INBOX"),
])
def test_same_as_doveadm(stored: Pair, args: tuple[str, ...]) -> None:
    assert stored.coteadm(*args) == stored.doveadm(*args)


def test_user_missing(stored: Pair) -> None:
    env = {k: v for k, v in os.environ.items() if k != "USER"}
    ours = stored.coteadm("mailbox", "list", env=env)
    theirs = stored.doveadm("mailbox", "list", env=env)
    assert ours == theirs and ours.rc == 64


def test_list_utf7_and_recursive_delete(stored: Pair) -> None:
    assert stored.doveadm("mailbox", "create", "-u", "user1", "Ünï", "P.Q", "P.Q.R").rc == 0
    for args in (("mailbox", "list", "-u", "user1", "-7"),
                 ("mailbox", "list", "-u", "user1", "-8")):
        ours, theirs = stored.coteadm(*args), stored.doveadm(*args)
        assert (ours.rc, lines(ours.out), ours.err) == (theirs.rc, lines(theirs.out), theirs.err)
    assert "&ANw-n&AO8-" in stored.coteadm("mailbox", "list", "-u", "user1", "-7").out
    ours = stored.coteadm("mailbox", "delete", "-u", "user1", "-r", "P")
    assert ours.rc == 68 and "Can't delete mailbox P: Mailbox doesn't exist: P" in ours.err
    listed = stored.doveadm("mailbox", "list", "-u", "user1").out.split()
    assert "P.Q" not in listed and "P.Q.R" not in listed and "Ünï" in listed
    assert stored.coteadm("mailbox", "delete", "-u", "user1", "Ünï").rc == 0


def test_status_of_several(stored: Pair) -> None:
    args = ("mailbox", "status", "-u", "user1", "uidnext messages", "INBOX", "Work")
    ours, theirs = stored.coteadm(*args), stored.doveadm(*args)
    # doveadm prints them in its mailbox list's hash order
    assert (ours.rc, lines(ours.out), ours.err) == (theirs.rc, lines(theirs.out), theirs.err)


def test_create_rename_delete(stored: Pair) -> None:
    for tool in ("coteadm", "doveadm"):
        run = getattr(stored, tool)
        prefix = "C" if tool == "coteadm" else "D"
        results = [
            run("mailbox", "create", "-u", "user1", f"{prefix}1", f"{prefix}1.Child"),
            run("mailbox", "create", "-u", "user1", f"{prefix}1"),
            run("mailbox", "rename", "-u", "user1", f"{prefix}1.Child", f"{prefix}1.Kid"),
            run("mailbox", "rename", "-u", "user1", "Nope", f"{prefix}9"),
            run("mailbox", "delete", "-u", "user1", f"{prefix}1.Kid"),
            run("mailbox", "delete", "-u", "user1", "Nope"),
        ]
        if tool == "coteadm":
            ours = [(r.rc, r.out, r.err.replace("C1", "X1").replace("C9", "X9"))
                    for r in results]
        else:
            theirs = [(r.rc, r.out, r.err.replace("D1", "X1").replace("D9", "X9"))
                      for r in results]
    assert ours == theirs
    assert [r[0] for r in ours] == [0, 65, 0, 68, 0, 68]
    listed = stored.doveadm("mailbox", "list", "-u", "user1", "C*").out.split()
    assert sorted(listed) == ["C1"]


def test_expunge_by_uid_then_seen(stored: Pair) -> None:
    r = stored.coteadm("expunge", "-u", "user1", "mailbox", "INBOX", "UID", "1")
    assert (r.rc, r.out, r.err) == (0, "", "")
    fetched = stored.doveadm("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "ALL")
    assert fetched.out == "uid: 2\n\f\nuid: 3\n"
    assert stored.coteadm("fetch", "-u", "user1", "uid", "mailbox", "INBOX", "ALL") == fetched
    r = stored.coteadm("expunge", "-u", "user1", "mailbox", "INBOX", "UNSEEN", "UID", "3")
    assert r.rc == 0
    assert stored.doveadm("fetch", "-u", "user1", "uid", "mailbox", "INBOX",
                          "ALL").out == "uid: 2\n"
