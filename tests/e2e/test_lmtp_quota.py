"""Quota at delivery against Dovecot with the same settings: the same LMTP replies for a
recipient over quota, an unknown one and one with room, and with lmtp_rcpt_check_quota the
refusal at RCPT time. Each server has its own (identical) store, so usage never mixes."""

from __future__ import annotations

import os
import socket

import pytest

from tests.e2e.test_lmtp_delivery import SESSION, converse
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

QUOTA = """\
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=2K
}
"""
BIG = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * 40


def replies(port: int, rcpts: list[str], body: bytes = BIG) -> bytes:
    lines = [b"LHLO c\r\nMAIL FROM:<s@example.com>\r\n",
             *[f"RCPT TO:<{r}>\r\n".encode() for r in rcpts], b"DATA\r\n",
             body + b".\r\n", b"QUIT\r\n"]
    out = converse(socket.create_connection(("127.0.0.1", port)), lines)
    return SESSION.sub(rb"\1ID\3 Saved", out.split(b"\r\n", 1)[1])  # greeting names the host


@pytest.mark.parametrize(("check_at_rcpt", "tempfail"), [(False, False), (True, False),
                                                       (False, True), (True, True)],
                         ids=["at data", "at rcpt", "at data, tempfail", "at rcpt, tempfail"])
def test_quota_replies_match_dovecot(check_at_rcpt: bool, tempfail: bool) -> None:
    extra = QUOTA + ("lmtp_rcpt_check_quota = yes\n" if check_at_rcpt else "")
    extra += "quota_full_tempfail = yes\n" if tempfail else ""
    users = {"small": "x", "roomy": "x"}
    fields = {"roomy": "userdb_quota_rule=*:storage=1M"}
    dc = DovecotOracle(users=users, passwd_extra=fields, extra_conf=extra)
    store = server_dir("cote-quota-store")
    (store / "mail").mkdir()
    vmail = mail_user()
    chown_tree(store, vmail.pw_uid, vmail.pw_gid)
    os.chmod(store, 0o755)
    try:
        dc.start()
        cote = CoteServer(mail_location=f"maildir:{store}/mail/%u", passwd_file=dc.dir / "users",
                          protocols="lmtp", extra_conf=extra)
        try:
            cote.start()
            for port in (dc.ports["lmtp"], cote.ports["lmtp"]):
                # Fill "small" close to its quota first (a small message fits).
                replies(port, ["small"], b"Subject: fill\r\n\r\n" + b"z" * 1500 + b"\r\n")
            rcpts = ["small", "nosuch", "roomy"]
            theirs = replies(dc.ports["lmtp"], rcpts)
            ours = replies(cote.ports["lmtp"], rcpts)
            assert ours == theirs
            assert b"<small> Quota exceeded (mailbox for user is full)" in theirs
            assert b"550 5.1.1 <nosuch>" in theirs and b"<roomy> ID" in theirs
        finally:
            cote.cleanup()
    finally:
        dc.cleanup()
        remove_dir(store)
