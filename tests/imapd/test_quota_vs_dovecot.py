"""Quota in IMAP as Dovecot's ``imap_quota`` plugin answers it: GETQUOTAROOT/GETQUOTA with a
``maildir`` quota root and rules (global and per-user from the userdb-less ``plugin { }``),
usage changing with APPEND and EXPUNGE, an APPEND over the limit, and NAMESPACE with a second,
prefixed namespace. Both servers see the same config."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tests.imapd.conftest import Client, cote_process, mail_user, normalize
from tests.support.dovecot import DovecotOracle

CONFIG = """\
mail_plugins = quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
namespace inbox {
  inbox = yes
  separator = /
}
namespace archive {
  prefix = Archive/
  separator = /
  location = maildir:%h/archive
  list = yes
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=2k:messages=3
  quota_rule2 = Trash:storage=+1k
}
"""
MESSAGE = "Subject: quota\r\n\r\n" + "x" * 600 + "\r\n"
APPEND = f"APPEND INBOX {{{len(MESSAGE)}+}}\r\n{MESSAGE}"
SCRIPT = ["NAMESPACE", "GETQUOTAROOT INBOX", 'GETQUOTA "User quota"', "GETQUOTA nosuch",
          "GETQUOTAROOT nosuch", APPEND, "GETQUOTAROOT INBOX", APPEND, APPEND, APPEND,
          'GETQUOTA "User quota"', "CREATE Trash", "GETQUOTAROOT Trash", "SELECT INBOX",
          "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE", 'GETQUOTA "User quota"',
          'LIST "" *', "CREATE Archive/old", 'LIST "" Archive/*', "GETQUOTAROOT Archive/old",
          "LOGOUT"]


@pytest.fixture(scope="module")
def quota_store() -> Iterator[DovecotOracle]:
    dc = DovecotOracle(users={"dcq": "secret", "coteq": "secret"}, extra_conf=CONFIG).start()
    yield dc
    dc.cleanup()


@pytest.mark.oracle
def test_quota_and_namespaces_as_dovecot(quota_store: DovecotOracle) -> None:
    maildir = quota_store.user_maildir("coteq")
    home = quota_store.dir / "home" / "coteq"
    home.mkdir(parents=True, exist_ok=True)
    vmail = mail_user()
    os.chown(home, vmail.pw_uid, vmail.pw_gid)
    config = quota_store.dir / "cote-quota.conf"
    config.write_text(f"mail_location = maildir:{maildir}\n" + CONFIG)
    theirs = Client(socket.create_connection(("127.0.0.1", quota_store.ports["imap"]),
                                             timeout=20))
    theirs.line()
    assert b" OK " in theirs.command("LOGIN dcq secret", "login")
    sock, proc = cote_process(maildir, "coteq", ["-c", str(config), "--home", str(home)])
    ours = Client(sock, proc)
    ours.line()
    mismatches, answers = [], []
    for command in SCRIPT:
        expected = normalize(theirs.command(command)).decode()
        got = normalize(ours.command(command)).decode()
        answers.append(got)
        if got != expected:
            mismatches.append(f"{command}\n--- dovecot\n{expected}--- cote\n{got}")
    theirs.close()
    ours.close()
    assert not mismatches, "\n".join(mismatches)
    # the script reaches the limit: the fourth message is refused
    assert "NO [OVERQUOTA]" in answers[SCRIPT.index(APPEND) + 4], answers
