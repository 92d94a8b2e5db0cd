"""Regression tests for Maildir mailbox-list bugs: LIST patterns that name INBOX, DELETE of a
Maildir++ folder that has children (against Dovecot), and the modes of new folder dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
