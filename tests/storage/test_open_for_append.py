"""Deliveries open mailboxes without building a view (no directory scan), like Dovecot's LDA;
the next normal open sees every delivered message with consecutive UIDs."""

from __future__ import annotations

import imaplib

from cote.storage import open_storage
from tests.support.dovecot import DovecotOracle
from tests.support.env import chown_tree, mail_user


def test_appends_without_a_view_are_seen_by_the_next_sync_and_by_dovecot() -> None:
    with DovecotOracle(users={"u": "p"}) as dc:
        imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        imap.login("u", "p")
        for i in range(30):
            imap.append("INBOX", "", None, b"Subject: existing %d\r\n\r\nx\r\n" % i)
        imap.logout()
        location = f"maildir:{dc.user_maildir('u')}"
        uids = []
        for i in range(5):
            mailboxes = open_storage(location)
            with mailboxes.open_for_append("INBOX") as box:
                assert box.scans == 0 and len(box) == 0  # nothing was read or scanned
                uids.append(box.append(b"Subject: delivered %d\n\nbody\n" % i))
            mailboxes.close()
        assert uids == list(range(31, 36))
        mailboxes = open_storage(location)
        with mailboxes.open("INBOX") as box:
            assert list(box.uids) == list(range(1, 36))
        mailboxes.close()
        vmail = mail_user()
        chown_tree(dc.user_maildir("u"), vmail.pw_uid, vmail.pw_gid)
        imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        imap.login("u", "p")
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", "HEADER", "Subject", "delivered")
        imap.logout()
        assert data[0].split() == [b"31", b"32", b"33", b"34", b"35"]
