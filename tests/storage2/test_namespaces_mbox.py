"""Debian's stock setup end to end: mbox ``mail_location``, the stock 15-mailboxes.conf
namespace and a count quota, opened through ``Namespaces.from_config`` and compared with
Dovecot's LIST, STATUS and GETQUOTAROOT for the same config."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator

import pytest

from cote.config import load
from cote.storage import QuotaExceeded
from cote.storage.namespaces import Namespaces
from tests.storage2.conftest import as_vmail, crlf, getquotaroot, message
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import chown_tree, mail_user

STOCK = r"""
namespace inbox {
  inbox = yes
  mailbox Drafts {
    special_use = \Drafts
  }
  mailbox Junk {
    special_use = \Junk
  }
  mailbox Trash {
    special_use = \Trash
  }
  mailbox Sent {
    special_use = \Sent
  }
  mailbox "Sent Messages" {
    special_use = \Sent
  }
}
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=4k:messages=10
  quota_rule2 = Trash:storage=+1k
}
"""
LOCATION = "mbox:~/mail:INBOX=~/inbox"


@pytest.fixture(scope="module")
def stock_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users={"user1": "pw"}, extra_conf=STOCK, mail_location=LOCATION)
    dc.start()
    try:
        yield dc
    finally:
        dc.cleanup()


def test_stock_config_like_dovecot(stock_dovecot: DovecotOracle) -> None:
    dc = stock_dovecot
    steps = [("INBOX", 1500), ("INBOX", 1500), ("Sent", 1000), ("INBOX", 1000),
             ("Trash", 800), ("Trash", 800)]
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login("user1", "pw")
    for box in ("Sent", "Trash"):
        m.create(box)
    theirs = [m.append(box, None, None, crlf(message(size)))[0] for box, size in steps]
    listed = {}
    for line in m.list('""', "*")[1]:
        assert isinstance(line, bytes)
        mm = re.match(rb'\(([^)]*)\) "(.)" (.*)', line)
        assert mm
        listed[mm.group(3).decode().strip('"')] = frozenset(mm.group(1).decode().split())
    their_ns = m.namespace()[1][0]
    their_root = getquotaroot(m, "INBOX")
    their_status = m.status("INBOX", "(MESSAGES UIDNEXT)")[1][0]
    m.logout()
    assert "NO" in theirs

    home = dc.dir / "cote-home"
    home.mkdir()
    chown_tree(home, mail_user().pw_uid, mail_user().pw_gid)
    cfg = load(str(dc.config_path)).lookup(protocol="imap")
    with as_vmail():
        ns = Namespaces.from_config(cfg, {}, user="user1", home=str(home),
                                    mail_location=f"mbox:{home}/mail:INBOX={home}/inbox")
        assert ns.quota is not None
        for box in ("Sent", "Trash"):
            ns.create(box)
        ours = []
        for box, size in steps:
            with ns.open(box) as mb:
                try:
                    mb.append(crlf(message(size)))
                    ours.append("OK")
                except QuotaExceeded:
                    ours.append("NO")
        our_list = {i.name: i.attributes for i in ns.list("*")}
        personal, other, shared = ns.namespace_data()
        root = ns.quota.roots_for("INBOX")
        res = {r.name: (r.usage, r.limit) for r in ns.quota.resources(root[0]) or []}
        st = ns.status("INBOX")
        ns.close()
    assert ours == theirs
    # \Marked is mtime > atime: it depends on who read which file when (cote's count quota
    # reads the files, Dovecot's uses its index), so it is checked in test_mbox_format
    marks = {"\\Marked", "\\UnMarked"}
    assert {k: v - marks for k, v in our_list.items()} == {k: v - marks
                                                            for k, v in listed.items()}
    assert (personal, other, shared) == ([("", "/")], [], [])
    assert their_ns == b'(("" "/")) NIL NIL'
    assert (root, res) == their_root
    assert their_status == f"INBOX (MESSAGES {st.messages} UIDNEXT {st.uidnext})".encode()
