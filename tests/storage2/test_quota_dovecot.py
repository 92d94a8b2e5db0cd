"""Quota against Dovecot: same saves, same OK/NO [OVERQUOTA], same maildirsize, same numbers,
and each reads the other's maildirsize."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from cote.storage import QuotaExceeded
from tests.storage2.conftest import (
    as_vmail,
    crlf,
    getquotaroot,
    imap_login,
    message,
    open_cote,
)
from tests.support.dovecot import DovecotOracle
from tests.support.env import chown_tree, mail_user

# (mailbox, message size): INBOX fills up, Trash gets its +3k, Junk is ignored
SAVES = [("INBOX", 3000), ("INBOX", 3000), ("INBOX", 3000), ("INBOX", 2000),
         ("INBOX", 1000), ("Trash", 2500), ("Trash", 1000), ("Junk", 5000),
         ("INBOX", 100)]


def dovecot_saves(dc: DovecotOracle, user: str, saves: list[tuple[str, int]]
                  ) -> list[str]:
    m = imap_login(dc, user)
    for box in ("Trash", "Junk"):
        m.create(box)
    out = []
    for box, size in saves:
        typ, data = m.append(box, None, None, crlf(message(size)))
        text = data[0].decode() if isinstance(data[0], bytes) else ""
        out.append("OK" if typ == "OK" else
                   "OVERQUOTA" if "[OVERQUOTA] Quota exceeded (mailbox for user is full)"
                   in text else text)
    m.logout()
    return out


def cote_saves(root: Path, user: str, saves: list[tuple[str, int]]) -> list[str]:
    with as_vmail():
        mailboxes, _ = open_cote(root, user)
        for box in ("Trash", "Junk"):
            mailboxes.create(box)
        out = []
        for box, size in saves:
            with mailboxes.open(box) as mb:
                try:
                    mb.append(message(size))
                    out.append("OK")
                except QuotaExceeded as e:
                    assert e.code == "OVERQUOTA"
                    out.append("OVERQUOTA" if e.message ==
                               "Quota exceeded (mailbox for user is full)" else e.message)
        mailboxes.close()
    return out


def cote_quotaroot(root: Path, user: str, mailbox: str = "INBOX"
                   ) -> tuple[list[str], dict[str, tuple[int, int]]]:
    with as_vmail():
        mailboxes, quota = open_cote(root, user)
        roots = quota.roots_for(mailbox)
        res: dict[str, tuple[int, int]] = {}
        for r in roots:
            got = quota.resources(r)
            assert got is not None
            res.update({x.name: (x.usage, x.limit) for x in got})
        mailboxes.close()
    return roots, res


@pytest.mark.parametrize("user", ["user1", "big"])
def test_same_saves_same_answers_and_maildirsize(quota_dovecot: DovecotOracle, store: Path,
                                                 user: str) -> None:
    dc = quota_dovecot
    expected = dovecot_saves(dc, user, SAVES)
    assert "OVERQUOTA" in expected or user == "big"
    got = cote_saves(store / user, user, SAVES)
    assert got == expected
    theirs = (dc.user_maildir(user) / "maildirsize").read_text()
    ours = (store / user / "maildirsize").read_text()
    assert ours == theirs
    m = imap_login(dc, user)
    for box in ("INBOX", "Trash", "Junk"):
        assert cote_quotaroot(store / user, user, box) == getquotaroot(m, box)
    m.logout()


def test_expunge_delta_line_and_numbers(quota_dovecot: DovecotOracle, store: Path) -> None:
    dc = quota_dovecot
    saves = [("INBOX", 1500), ("INBOX", 2600), ("INBOX", 1100)]
    assert dovecot_saves(dc, "user2", saves) == ["OK"] * 3
    m = imap_login(dc, "user2")
    m.select("INBOX")
    m.store("1:2", "+FLAGS", "\\Deleted")
    m.expunge()
    dc_root = getquotaroot(m, "INBOX")
    m.logout()
    assert cote_saves(store / "u2", "user2", saves) == ["OK"] * 3
    with as_vmail():
        mailboxes, _ = open_cote(store / "u2", "user2")
        with mailboxes.open("INBOX") as box:
            box.store(box.uids[:2], "+", ["\\Deleted"])
            assert len(box.expunge()) == 2
        mailboxes.close()
    assert ((store / "u2" / "maildirsize").read_text()
            == (dc.user_maildir("user2") / "maildirsize").read_text())
    assert (store / "u2" / "maildirsize").read_text().endswith("\n-4100 -2\n")
    assert cote_quotaroot(store / "u2", "user2") == dc_root


def test_cote_reads_dovecots_file_without_rewriting(quota_dovecot: DovecotOracle) -> None:
    dc = quota_dovecot
    dovecot_saves(dc, "user3", [("INBOX", 1200), ("INBOX", 700)])
    m = imap_login(dc, "user3")
    expected = getquotaroot(m, "INBOX")
    m.logout()
    path = dc.user_maildir("user3") / "maildirsize"
    before = path.read_bytes(), path.stat().st_ino
    assert cote_quotaroot(dc.user_maildir("user3"), "user3") == expected
    assert (path.read_bytes(), path.stat().st_ino) == before
    # cote appends its delta to Dovecot's file; Dovecot then counts it
    with as_vmail():
        mailboxes, _ = open_cote(dc.user_maildir("user3"), "user3")
        with mailboxes.open("INBOX") as box:
            box.append(message(900))
        mailboxes.close()
    assert path.read_bytes() == before[0] + b"900 1\n"
    m = imap_login(dc, "user3")
    assert getquotaroot(m, "INBOX") == (["User quota"], {"STORAGE": (3, 10),
                                                         "MESSAGE": (3, 6)})
    m.logout()


def test_dovecot_reads_cotes_file(quota_dovecot: DovecotOracle) -> None:
    dc = quota_dovecot
    root = dc.user_maildir("fromcote")
    root.mkdir(exist_ok=True)
    vm = mail_user()
    chown_tree(root, vm.pw_uid, vm.pw_gid)
    assert cote_saves(root, "fromcote", [("INBOX", 4000), ("Trash", 3000),
                                         ("INBOX", 4000)]) == ["OK", "OK", "OVERQUOTA"]
    path = root / "maildirsize"
    before = path.read_bytes()
    assert before == b"10240S,6C\n0 0\n4000 1\n3000 1\n"
    m = imap_login(dc, "fromcote")
    assert getquotaroot(m, "INBOX") == (["User quota"], {"STORAGE": (7, 10),
                                                         "MESSAGE": (2, 6)})
    typ, _ = m.append("INBOX", None, None, crlf(message(4000)))
    assert typ == "NO"
    m.logout()
    assert path.read_bytes() == before


def test_no_limit_means_no_quota_root(quota_dovecot: DovecotOracle, store: Path) -> None:
    dc = quota_dovecot
    m = imap_login(dc, "nolimit")
    typ, _ = m._simple_command("GETQUOTAROOT", "INBOX")
    assert typ == "OK"
    assert m.untagged_responses.pop("QUOTA", []) == []
    assert cote_saves(store / "nl", "nolimit", [("INBOX", 30000)]) == ["OK"]
    assert cote_quotaroot(store / "nl", "nolimit")[1] == {}
    typ, _ = m.append("INBOX", None, None, crlf(message(30000)))
    assert typ == "OK"
    m.logout()
    assert ((store / "nl" / "maildirsize").read_text().split("\n")[0]
            == (dc.user_maildir("nolimit") / "maildirsize").read_text().split("\n")[0] == "0S")


def test_delivery_grace_like_lmtp(quota_dovecot: DovecotOracle, store: Path) -> None:
    dc = quota_dovecot
    dovecot_saves(dc, "user4", [("INBOX", 4000), ("INBOX", 5000)])
    lmtp_results = []
    for size in (2500, 3000, 100):
        s = smtplib.LMTP("127.0.0.1", dc.ports["lmtp"])
        try:
            s.sendmail("a@example.org", ["user4"], crlf(message(size)))
            lmtp_results.append("OK")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["user4"]
            lmtp_results.append(f"{code} {text.decode()}")
        except smtplib.SMTPDataError as e:
            lmtp_results.append(f"{e.smtp_code} {e.smtp_error.decode()}")
        finally:
            s.close()
    assert lmtp_results[0] == "OK"  # the grace lets this one through
    assert "Quota exceeded (mailbox for user is full)" in lmtp_results[2]
    cote_results = []
    with as_vmail():
        mailboxes, _ = open_cote(store / "u4", "user4")
        with mailboxes.open("INBOX") as box:
            box.append(message(4000))
            box.append(message(5000))
        mailboxes.close()
        mailboxes, _ = open_cote(store / "u4", "user4", delivery=True)
        with mailboxes.open("INBOX") as box:
            for size in (2500, 3000, 100):
                try:
                    box.append(message(size))
                    cote_results.append("OK")
                except QuotaExceeded as e:
                    cote_results.append(e.message)
        mailboxes.close()
    assert [r if r == "OK" else "NO" for r in cote_results] == \
        [r if r == "OK" else "NO" for r in lmtp_results]
    # Dovecot's LMTP adds Return-Path/Delivered-To/Received to the delivered mail, so only
    # the limits and the message count are comparable byte for byte
    ours = (store / "u4" / "maildirsize").read_text().split("\n")
    theirs = (dc.user_maildir("user4") / "maildirsize").read_text().split("\n")
    assert ours[0] == theirs[0] and ours[1].split()[1] == theirs[1].split()[1] == "3"
    assert ours[1].split()[0] == "11500"


def test_same_quota_for_copy(quota_dovecot: DovecotOracle, store: Path) -> None:
    dc = quota_dovecot
    dovecot_saves(dc, "user5", [("INBOX", 3000), ("INBOX", 3000)])
    m = imap_login(dc, "user5")
    m.select("INBOX")
    results = [m.copy("1", "Trash")[0], m.copy("2", "Trash")[0], m.copy("1:2", "Junk")[0]]
    dc_root = getquotaroot(m, "INBOX")
    m.logout()
    cote_saves(store / "u5", "user5", [("INBOX", 3000), ("INBOX", 3000)])
    ours = []
    with as_vmail():
        mailboxes, _ = open_cote(store / "u5", "user5")
        with mailboxes.open("INBOX") as box:
            for uids, dest in (([1], "Trash"), ([2], "Trash"), ([1, 2], "Junk")):
                with mailboxes.open(dest) as target:
                    try:
                        box.copy(uids, target)
                        ours.append("OK")
                    except QuotaExceeded:
                        ours.append("NO")
        mailboxes.close()
    assert ours == results
    assert cote_quotaroot(store / "u5", "user5") == dc_root
    assert ((store / "u5" / "maildirsize").read_text()
            == (dc.user_maildir("user5") / "maildirsize").read_text())

