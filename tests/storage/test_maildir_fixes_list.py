"""Regression tests for Maildir mailbox-list bugs: LIST patterns that name INBOX, DELETE of a
Maildir++ folder that has children (against Dovecot), and the modes of new folder dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage.index import NAME as INDEX_NAME
from cote.storage.maildir.list import MaildirList
from cote.storage.pattern import compile_pattern
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
