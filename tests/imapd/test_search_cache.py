"""SEARCH's header cache (``searchhdr`` column): an index made before the column gets it on
open, and a warm header search answers from the cache without reading the message files,
while a header name not asked before is read from them."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage.index import NAME as INDEX_NAME
from cote.storage.maildir.list import MaildirList
from tests.imapd.conftest import Client, cote_process
from tests.support.env import mail_user, remove_dir, server_dir

MESSAGES = [
    b"From: Alice <alice@example.com>\r\nSubject: alpha report\r\n\r\nbody one\r\n",
    b"From: bob@example.org\r\nSubject: beta\r\nX-Tag: kept\r\n\r\nbody two\r\n",
    b"Subject: gamma\r\n\r\nbody three\r\n",
]


@pytest.fixture
def root() -> Iterator[Path]:
    d = server_dir("search-cache")
    yield d / "Maildir"
    remove_dir(d)


def _fill(root: Path) -> list[int]:
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    with box.begin_append() as tx:
        for msg in MESSAGES:
            tx.add(msg, [])
        uids = tx.commit()
    box.close()
    ml.close()
    return uids


def test_an_index_without_the_column_gets_it(root: Path) -> None:
    uids = _fill(root)
    db = sqlite3.connect(root / INDEX_NAME)
    db.execute("ALTER TABLE msg DROP COLUMN searchhdr")  # an index from before the column
    db.close()
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    assert box.cache_get_many(uids, "searchhdr") == {}
    box.cache_put_many([(uids[0], "searchhdr", b"h2x"), (uids[2], "searchhdr", b"h2z")])
    assert box.cache_get_many(uids, "searchhdr") == {uids[0]: b"h2x", uids[2]: b"h2z"}
    assert box.cache_get_many(uids[1:], "searchhdr") == {uids[2]: b"h2z"}
    box.close()
    ml.close()


def _client(root: Path) -> Client:
    vmail = mail_user()
    for dirpath, _, files in os.walk(root.parent):
        os.chown(dirpath, vmail.pw_uid, vmail.pw_gid)
        for f in files:
            os.chown(os.path.join(dirpath, f), vmail.pw_uid, vmail.pw_gid)
    sock, proc = cote_process(root, "cacheuser")
    c = Client(sock, proc)
    assert c.line().startswith(b"* PREAUTH ")
    return c


def test_a_warm_header_search_reads_no_message_file(root: Path) -> None:
    _fill(root)
    c = _client(root)
    try:
        assert b" OK " in c.command("SELECT INBOX")
        assert b"* SEARCH 1\r\n" in c.command("SEARCH SUBJECT alpha")
        assert b"* SEARCH 2\r\n" in c.command("SEARCH FROM bob")
        # every file rewritten behind the server's back: cached entries still answer
        for name in os.listdir(root / "cur"):
            path = root / "cur" / name
            path.write_bytes(path.read_bytes().replace(b"Subject: ", b"Subject: delta ")
                             .replace(b"alpha", b"omega")
                             .replace(b"X-Tag: kept", b"X-Tag: changed"))
        assert b"* SEARCH 1\r\n" in c.command("SEARCH SUBJECT alpha")
        assert b"* SEARCH\r\n" in c.command("SEARCH SUBJECT delta")
        assert b"* SEARCH 1\r\n" in c.command("SEARCH OR FROM alice CC nobody")
        # a header not cached yet is read from the (rewritten) files
        assert b"* SEARCH 2\r\n" in c.command('SEARCH HEADER X-Tag "changed"')
        assert b"* SEARCH\r\n" in c.command('SEARCH HEADER X-Tag "kept"')
    finally:
        c.command("LOGOUT")
        c.close()



def test_header_search_across_cache_chunks(root: Path) -> None:
    """More messages than one cache chunk (4,096): hits on both sides of the edge, cold
    (texts built and written per chunk) and warm."""
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    with box.begin_append() as tx:
        for i in range(1, 4301):
            mark = "needle " if i % 1000 == 0 or i in (4096, 4097) else ""
            tx.add(f"Subject: {mark}message {i}\r\n\r\nbody\r\n".encode(), [])
        tx.commit()
    box.close()
    ml.close()
    c = _client(root)
    try:
        assert b" OK " in c.command("SELECT INBOX")
        expected = b"* SEARCH 1000 2000 3000 4000 4096 4097\r\n"
        assert expected in c.command("SEARCH SUBJECT needle")
        assert expected in c.command("SEARCH SUBJECT needle")
        assert b"* SEARCH 4300\r\n" in c.command('SEARCH SUBJECT "message 4300"')
    finally:
        c.command("LOGOUT")
        c.close()


def test_a_repeated_search_sees_new_and_expunged_messages(root: Path) -> None:
    """The per-view memo of a session: messages appended by another session and messages
    expunged since the last SEARCH are searched as they now are."""
    _fill(root)
    c = _client(root)
    other = _client(root)
    try:
        assert b" OK " in c.command("SELECT INBOX")
        assert b"* SEARCH 1\r\n" in c.command("SEARCH SUBJECT alpha")
        msg = b"Subject: alpha again\r\n\r\nx\r\n"
        assert b" OK " in other.command(b"APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
        assert b"* 4 EXISTS" in c.command("NOOP")
        assert b"* SEARCH 1 4\r\n" in c.command("SEARCH SUBJECT alpha")
        assert b" OK " in c.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert b"* 1 EXPUNGE" in c.command("EXPUNGE")
        assert b"* SEARCH 3\r\n" in c.command("SEARCH SUBJECT alpha")
        assert b"* SEARCH 4\r\n" in c.command("UID SEARCH SUBJECT again")  # its UID
    finally:
        for client in (c, other):
            client.command("LOGOUT")
            client.close()
