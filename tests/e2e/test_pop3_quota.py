"""POP3 deletions update Maildir++ quota (maildirsize) exactly as Dovecot's do.

Each server gets the same messages through its own LMTP into its own store, then POP3
deletes one; the maildirsize files must be identical, line by line."""

from __future__ import annotations

import os
import socket

from tests.e2e.test_lmtp_delivery import converse
from tests.e2e.test_lmtp_quota import QUOTA
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir


def deliver(port: int, body: bytes) -> None:
    converse(socket.create_connection(("127.0.0.1", port)),
             [b"LHLO c\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<u>\r\nDATA\r\n",
              body + b".\r\n", b"QUIT\r\n"])


def pop3_delete_first(port: int) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"USER u\r\nPASS x\r\nDELE 1\r\nQUIT\r\n")
    out = b"".join(f.readline() for _ in range(4))
    f.close()
    sock.close()
    return out


def test_pop3_deletion_updates_maildirsize_like_dovecot() -> None:
    dc = DovecotOracle(users={"u": "x"}, extra_conf=QUOTA.replace("2K", "1M"))
    store = server_dir("cote-pop3-quota")
    (store / "mail").mkdir()
    vmail = mail_user()
    chown_tree(store, vmail.pw_uid, vmail.pw_gid)
    os.chmod(store, 0o755)
    try:
        dc.start()
        cote = CoteServer(mail_location=f"maildir:{store}/mail/%u", passwd_file=dc.dir / "users",
                          protocols="pop3 lmtp", extra_conf=QUOTA.replace("2K", "1M"))
        try:
            cote.start()
            for i in range(3):
                body = b"Subject: m%d\r\n\r\n" % i + b"x" * (100 * (i + 1)) + b"\r\n"
                deliver(dc.ports["lmtp"], body)
                deliver(cote.ports["lmtp"], body)
            assert pop3_delete_first(cote.ports["pop3"]) == pop3_delete_first(dc.ports["pop3"])
            theirs = (dc.user_maildir("u") / "maildirsize").read_text()
            ours = (store / "mail" / "u" / "maildirsize").read_text()
            assert ours == theirs
            assert theirs.splitlines()[-1].startswith("-")  # the deletion's delta line
        finally:
            cote.cleanup()
    finally:
        dc.cleanup()
        remove_dir(store)
