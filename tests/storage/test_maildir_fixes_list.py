"""Regression tests for Maildir mailbox-list bugs: LIST patterns that name INBOX, DELETE of a
Maildir++ folder that has children (against Dovecot), and the modes of new folder dirs."""

from __future__ import annotations

import imaplib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import MailboxNotFound
from cote.storage.index import NAME as INDEX_NAME
from cote.storage.maildir.list import MaildirList
from cote.storage.pattern import compile_pattern
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir


@pytest.fixture
def home() -> Iterator[Path]:
    d = server_dir("storage-fixes")
    yield d
    remove_dir(d)


def test_list_inbox_pattern_returns_only_inbox(home: Path) -> None:
    ml = MaildirList(f"maildir:{home}/Maildir")
    for name in ("Trash", "Sent1", "Trash.Old", "inbox2", "Work"):
        ml.create(name)
    for pattern in ("INBOX", "inbox", "Inbox"):
        assert [i.name for i in ml.list(pattern)] == ["INBOX"], pattern
    assert [i.name for i in ml.list("Trash")] == ["Trash"]
    assert {i.name for i in ml.list("%")} == {"INBOX", "Trash", "Sent1", "inbox2", "Work"}
    ml.close()


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("INBOX", "INBOX", True), ("inbox", "INBOX", True), ("INBOX", "Trash", False),
    ("inbox", "Trash", False), ("INBOX", "Sent1", False), ("inBox.%", "INBOX.sub", True),
    ("inBox.%", "Other.sub", False), ("INBOX.%", "Trash.sub", False),
    ("inbox*", "INBOX.a.b", True), ("INBOX*", "INBOXES", True), ("inbox", "inbox2", False),
])
def test_inbox_is_case_insensitive_only_for_inbox(pattern: str, name: str,
                                                  matches: bool) -> None:
    assert compile_pattern(pattern, ".")(name) is matches


def _modes(root: Path) -> dict[str, int]:
    out = {}
    for p in root.rglob("*"):
        if p.name != INDEX_NAME:
            out[str(p.relative_to(root))] = p.stat().st_mode & 0o7777
    return out


@pytest.mark.parametrize("root_mode", [0o700, 0o770, 0o750, 0o2770])
def test_new_folders_get_the_mode_of_the_root_whatever_the_umask(home: Path,
                                                                  root_mode: int) -> None:
    """As Dovecot (checked with the oracle): every dir below the root gets the root's mode
    bits (setgid included), every file the root's mode without x bits, umask or not."""
    root = home / "Maildir"
    root.mkdir()
    os.chmod(root, root_mode)
    old = os.umask(0o022)
    try:
        ml = MaildirList(f"maildir:{root}")
        ml.create("a.b")
        ml.create("c")
        ml.open("c").append(b"Subject: x\r\n\r\n.\r\n")
        ml.subscribe("c")  # subscriptions: written through a dotlock and renamed
        ml.close()
    finally:
        os.umask(old)
    modes = _modes(root)
    for sub in ("", ".a.b/", ".c/"):
        for d in ("cur", "new", "tmp"):
            assert modes[sub + d] == root_mode, sub + d
    assert modes[".a.b"] == modes[".c"] == root_mode
    file_mode = root_mode & 0o666
    for rel, mode in modes.items():
        if not (root / rel).is_dir() and "dovecot-uidvalidity." not in rel:
            assert mode == file_mode, rel


def _dovecot_list(imap: imaplib.IMAP4, pattern: str) -> dict[str, set[str]]:
    typ, lines = imap.list('""', pattern)
    assert typ == "OK"
    out: dict[str, set[str]] = {}
    for line in lines:
        if not isinstance(line, bytes):
            continue
        m = re.match(rb'\(([^)]*)\) "\." "?([^"]*)"?', line)
        assert m, line
        out[m.group(2).decode()] = set(m.group(1).decode().split())
    return out


def _cote_list(ml: MaildirList, pattern: str) -> dict[str, set[str]]:
    return {i.name: set(i.attributes) for i in ml.list(pattern)}


@pytest.mark.oracle
def test_delete_of_a_maildirpp_folder_with_children_lists_like_dovecot(home: Path) -> None:
    """Dovecot 2.3 (Maildir++, default mailbox_list_index=yes) removes ``.a`` entirely, yet
    its list index keeps ``a`` as a selectable parent: LIST shows ``(\\HasChildren) a``,
    no ``\\Noselect``, in later sessions too, while SELECT/STATUS/DELETE of ``a`` say it does
    not exist; ``a`` disappears with its last child and comes back ``\\Noselect``."""
    steps: list[tuple[str, str]] = [
        ("create", "a"), ("create", "a.b"), ("create", "x.y.z"), ("append", "a"),
        ("delete", "a"), ("list", ""), ("relogin", ""), ("list", ""),
        ("delete", "a.b"), ("list", ""), ("create", "a.c"), ("list", ""),
        ("create", "m"), ("create", "m.n"), ("delete", "m"), ("create", "m"), ("list", ""),
        ("delete", "m"), ("list", ""),
    ]
    patterns = ("*", "%", "a", "a.%", "m")
    with DovecotOracle(users={"user1": "pass1"}) as dc:
        imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        imap.login("user1", "pass1")
        ml = MaildirList(f"maildir:{home}/Maildir")
        for op, name in steps:
            if op == "create":
                assert imap.create(name)[0] == "OK"
                ml.create(name)
            elif op == "append":
                assert imap.append(name, None, None, b"Subject: x\r\n\r\n.\r\n")[0] == "OK"
                ml.open(name).append(b"Subject: x\r\n\r\n.\r\n")
            elif op == "delete":
                assert imap.delete(name)[0] == "OK"
                ml.delete(name)
            elif op == "relogin":
                imap.logout()
                imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
                imap.login("user1", "pass1")
                ml.close()
                ml = MaildirList(f"maildir:{home}/Maildir")
            else:
                for pattern in patterns:
                    assert _cote_list(ml, pattern) == _dovecot_list(imap, pattern), \
                        (pattern, steps)
                for box in ("a", "m"):
                    dovecot_has = imap.status(box, "(MESSAGES)")[0] == "OK"
                    assert ml.exists(box) is dovecot_has, box
        # the deleted parent's mail and directory are gone on both sides
        dovecot_dirs = {p.name for p in dc.user_maildir("user1").iterdir() if p.is_dir()}
        cote_dirs = {p.name for p in (home / "Maildir").iterdir() if p.is_dir()}
        assert cote_dirs == dovecot_dirs
        assert imap.delete("a")[0] == "NO"
        with pytest.raises(MailboxNotFound):
            ml.delete("a")
        imap.logout()
        ml.close()
