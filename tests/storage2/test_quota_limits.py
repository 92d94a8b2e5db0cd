"""Quota without rules: ``quota_max_mail_size`` and the limits an existing maildirsize carries,
against Dovecot."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from cote.storage import StorageError
from tests.storage2.conftest import as_vmail, crlf, getquotaroot, message, open_cote, oracle_conf
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import chown_tree, mail_user

PLUGIN = {"quota": "maildir:User quota", "quota_max_mail_size": "1k"}
FOREIGN = "20480S,7C\n100 1\n"


@pytest.fixture(scope="module")
def limits_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users={"user1": "pw", "user2": "pw"}, extra_conf=oracle_conf(PLUGIN))
    dc.start()
    try:
        yield dc
    finally:
        dc.cleanup()


def test_max_mail_size(limits_dovecot: DovecotOracle) -> None:
    m = imaplib.IMAP4("127.0.0.1", limits_dovecot.ports["imap"])
    m.login("user1", "pw")
    typ, data = m.append("INBOX", None, None, crlf(message(2000)))
    m.logout()
    assert typ == "NO"
    text = data[0].decode() if isinstance(data[0], bytes) else ""
    root = limits_dovecot.dir / "cote-user1"
    root.mkdir()
    chown_tree(root, mail_user().pw_uid, mail_user().pw_gid)
    with as_vmail():
        mailboxes, _ = open_cote(root, plugin=PLUGIN)
        with mailboxes.open("INBOX") as box:
            with pytest.raises(StorageError) as e:
                box.append(message(2000))
            assert box.append(message(500)) == 1
        mailboxes.close()
    assert text.startswith(f"[{e.value.code}] {e.value.message} (")


def test_limits_from_an_existing_maildirsize(limits_dovecot: DovecotOracle) -> None:
    dc = limits_dovecot
    vm = mail_user()
    theirs = dc.user_maildir("user2")
    ours = dc.dir / "cote-user2"
    for d in (theirs, ours):
        d.mkdir(parents=True)
        (d / "maildirsize").write_text(FOREIGN)
        chown_tree(d, vm.pw_uid, vm.pw_gid)
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login("user2", "pw")
    expected = getquotaroot(m, "INBOX")
    assert m.append("INBOX", None, None, crlf(message(213)))[0] == "OK"
    m.logout()
    assert expected == (["User quota"], {"STORAGE": (1, 20), "MESSAGE": (1, 7)})
    with as_vmail():
        mailboxes, quota = open_cote(ours, plugin=PLUGIN)
        got = quota.resources("User quota")
        with mailboxes.open("INBOX") as box:
            box.append(message(213))
        mailboxes.close()
    assert quota.roots_for("INBOX") == expected[0]
    assert {r.name: (r.usage, r.limit) for r in got or []} == expected[1]
    assert (ours / "maildirsize").read_text() == (theirs / "maildirsize").read_text() \
        == FOREIGN + "213 1\n"
