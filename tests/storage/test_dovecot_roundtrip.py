"""Differential: a store written by Dovecot reads the same through cote, and the other way.

Dovecot fills a Maildir through IMAP (APPEND with flags and keywords, STORE, EXPUNGE, nested
CREATE, SUBSCRIBE); cote must see the same UIDs, UIDVALIDITY, flags, keywords, folders and
subscriptions. Then cote changes the store and a fresh Dovecot login must see cote's result.
"""

from __future__ import annotations

import imaplib

import pytest

from cote.storage.maildir.list import MaildirList
from tests.storage.conftest import as_vmail, cote_state, imap_state
from tests.support.dovecot import DovecotOracle

pytestmark = pytest.mark.oracle


def _fill_with_dovecot(port: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login("user1", "pass1")
    for i in range(6):
        flags = [None, r"(\Seen)", r"(\Flagged $Forwarded)", r"(\Seen work later)",
                 r"(\Answered \Draft)", None][i]
        typ, _ = imap.append("INBOX", flags, None, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
        assert typ == "OK"
    imap.append("INBOX", None, None, b"Subject: bare LF\n\nline\n")
    imap.select("INBOX")
    imap.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    imap.uid("STORE", "2", "+FLAGS", r"(\Flagged urgent)")
    imap.uid("STORE", "4", "-FLAGS", r"(work)")
    imap.expunge()
    for name in ("Work", "Work.Projects", "Work.Projects.Alpha", "Archive", "&ANw-bersicht"):
        assert imap.create(name)[0] == "OK"
    imap.append("Work.Projects", r"(\Seen)", None, b"Subject: p\r\n\r\nx\r\n")
    for name in ("INBOX", "Work.Projects", "&ANw-bersicht"):
        assert imap.subscribe(name)[0] == "OK"
    imap.logout()


def test_dovecot_store_reads_identically_in_cote_and_back(dovecot: DovecotOracle) -> None:
    port = dovecot.ports["imap"]
    _fill_with_dovecot(port)
    before = imap_state(port, "user1", "pass1")
    assert before["boxes"]["INBOX"]["messages"], "Dovecot stored nothing?"
    root = dovecot.user_maildir("user1")

    with as_vmail():
        ml = MaildirList(f"maildir:{root}")
        seen = cote_state(ml)
        # cote's interface speaks Unicode; the wire (and cote_state) modified UTF-7
        assert "Übersicht" in ml.subscriptions()
        assert seen == before

        # now cote changes the store
        inbox = ml.open("INBOX")
        new_uid = inbox.append(b"Subject: from cote\r\n\r\nhello\r\n", ["\\Seen", "cote-kw"])
        bare_uid = inbox.append(b"Subject: unflagged\n\nnew/ mail\n")
        inbox.sync()
        first, second = inbox.uids[0], inbox.uids[1]
        inbox.store([first], "+", ["\\Answered", "$Label1"])
        inbox.store([second], "=", ["\\Deleted"])
        assert inbox.expunge() == [second]
        inbox.store([new_uid], "-", ["cote-kw"])
        inbox.store([new_uid], "+", ["later"])
        inbox.close()
        ml.create("Cote.Made.Here")
        ml.rename("Work", "Job")
        ml.subscribe("Cote.Made.Here")
        ml.unsubscribe("INBOX")
        archive = ml.open("Archive")
        copied = ml.open("Job.Projects").copy([1], archive)
        assert [src for src, _ in copied] == [1]
        after_cote = cote_state(ml)
        ml.close()

    after = imap_state(port, "user1", "pass1")
    assert after["boxes"]["INBOX"]["uidvalidity"] == before["boxes"]["INBOX"]["uidvalidity"]
    inbox_msgs = dict(after["boxes"]["INBOX"]["messages"])
    assert inbox_msgs[new_uid] == {"\\Seen", "later"}
    assert bare_uid in inbox_msgs and second not in inbox_msgs
    assert {"\\Answered", "$Label1"} <= inbox_msgs[first]
    assert "Job.Projects.Alpha" in after["list"] and "Work" not in after["list"]
    assert "Cote.Made.Here" in after["list"]
    assert after["subscriptions"] == sorted(["Work.Projects", "&ANw-bersicht", "Cote.Made.Here"])
    # everything else agrees exactly, UIDs and UIDVALIDITY included
    assert after["boxes"] == after_cote["boxes"]
    assert after["list"] == after_cote["list"]


def test_dovecot_sees_cote_created_mailbox_and_uidvalidity(dovecot: DovecotOracle) -> None:
    root = dovecot.user_maildir("user2")
    with as_vmail():
        ml = MaildirList(f"maildir:{root}")
        ml.create("Fresh")
        box = ml.open("Fresh")
        uids = []
        with box.begin_append() as tx:
            for i in range(3):
                tx.add(f"Subject: {i}\r\n\r\n{i}\r\n".encode(), ["\\Flagged"] if i else [])
            uids = tx.commit()
        assert uids == [1, 2, 3]
        uidvalidity = box.uidvalidity
        ml.close()
    state = imap_state(dovecot.ports["imap"], "user2", "pass2")
    fresh = state["boxes"]["Fresh"]
    assert fresh["uidvalidity"] == uidvalidity and fresh["uidnext"] == 4
    assert fresh["messages"] == [(1, frozenset()), (2, frozenset({"\\Flagged"})),
                                 (3, frozenset({"\\Flagged"}))]
