"""``quota_over_flag`` / ``quota_over_script`` and the ``dirsize`` backend against Dovecot.

The over-flag check runs the script when the userdb's flag and the real state disagree; the
same users (under/over quota, flag set/unset/other value) must give the same script calls as
Dovecot's at login. ``dirsize`` sums every file of the mail tree: cote reading the tree
Dovecot wrote must report the usage Dovecot reports."""

from __future__ import annotations

import imaplib
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cote.storage import MaildirList
from cote.storage.quota import Quota
from cote.storage.quota.policy import wildcard_match_icase
from tests.storage2.conftest import as_vmail, crlf, getquotaroot, message, oracle_conf
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import chown_tree, mail_user

OVER = {
    "quota": "maildir:User quota",
    "quota_rule": "*:storage=4k",
    "quota_over_flag_value": "TRUE",
    "quota_over_script": "over-flag mismatch %u",
}
# user -> (userdb quota_over_flag or None, bytes stored before login)
USERS: dict[str, tuple[str | None, int]] = {
    "under_unset": (None, 0),
    "under_true": ("TRUE", 1000),
    "under_other": ("no", 1000),
    "over_unset": (None, 5000),
    "over_true": ("true", 5000),
    "over_other": ("no", 5000),
}
SCRIPT = """#!/bin/sh
echo "$*" >> {log}
"""


def fill(root: Path, size: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if size:
        (root / "new" / f"1700000000.M1P1.host,S={size}").write_bytes(message(size))


def test_wildcard_mask() -> None:
    assert wildcard_match_icase("TRUE", "true") and wildcard_match_icase("yes-TRUE", "*true*")
    assert wildcard_match_icase("x", "?") and not wildcard_match_icase("xy", "?")
    assert not wildcard_match_icase("[a]", "[ab]") and wildcard_match_icase("a.b", "a.b")


def cote_calls(store: Path, user: str, flag: str | None, plugin: dict[str, str]
               ) -> list[list[str]]:
    calls: list[list[str]] = []
    fields = {"quota_over_flag": flag} if flag is not None else {}

    def hook(command: Sequence[str]) -> None:
        calls.append(list(command))

    quota = Quota.from_settings(plugin, fields, on_warning=hook, variables={"user": user})
    assert quota is not None
    mailboxes = MaildirList(f"maildir:{store}", quota=quota)
    quota.attach(mailboxes)
    mailboxes.close()
    return calls


def test_over_script_runs_for_the_same_users_as_dovecot(store: Path) -> None:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    script = store / "over.sh"
    script.write_text(SCRIPT.format(log=store / "dovecot.log"))
    script.chmod(0o755)
    service = f"""
service over-flag {{
  executable = script {script}
  unix_listener over-flag {{
    mode = 0666
  }}
}}
"""
    extra = {u: f"userdb_quota_over_flag={f}" for u, (f, _) in USERS.items() if f is not None}
    dc = DovecotOracle(users={u: "pw" for u in USERS}, extra_conf=oracle_conf(OVER) + service,
                       passwd_extra=extra)
    dc.write_config()
    vm = mail_user()
    for user, (_, size) in USERS.items():
        fill(dc.dir / "mail" / user, size)
        fill(store / "cote" / user, size)
    chown_tree(dc.dir / "mail", vm.pw_uid, vm.pw_gid)
    chown_tree(store / "cote", vm.pw_uid, vm.pw_gid)
    dc.start()
    try:
        for user in USERS:
            m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
            m.login(user, "pw")
            m.logout()
        want = ["mismatch under_true TRUE", "mismatch over_unset", "mismatch over_other no"]
        log = store / "dovecot.log"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
                not log.exists() or len(log.read_text().splitlines()) < len(want)):
            time.sleep(0.05)
        time.sleep(0.3)  # a wrong extra call would come now
        assert sorted(log.read_text().splitlines()) == sorted(want)
    finally:
        dc.cleanup()
    got = []
    with as_vmail():
        for user, (flag, _) in USERS.items():
            got += [" ".join(c[1:]) for c in cote_calls(store / "cote" / user, user, flag, OVER)]
    assert sorted(got) == sorted(want)


def test_lazy_check_waits_for_the_usage(store: Path) -> None:
    calls: list[list[str]] = []
    root = store / "lazy"
    fill(root, 5000)
    quota = Quota.from_settings({**OVER, "quota_over_flag_lazy_check": "yes"}, {},
                                on_warning=lambda c: calls.append(list(c)),
                                variables={"user": "u"})
    assert quota is not None
    mailboxes = MaildirList(f"maildir:{root}", quota=quota)
    quota.attach(mailboxes)
    assert calls == []
    assert quota.resources("User quota")
    quota.resources("User quota")
    assert calls == [["over-flag", "mismatch", "u"]]  # once per session
    mailboxes.close()


DIRSIZE = {"quota": "dirsize:User quota", "quota_rule": "*:storage=100k:messages=1"}


def test_dirsize_counts_the_tree_like_dovecot(store: Path) -> None:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users={"user1": "pw"}, extra_conf=oracle_conf(DIRSIZE))
    dc.start()
    try:
        m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        m.login("user1", "pw")
        m.create("Sub")
        for i, size in enumerate((3000, 7000, 12000)):
            # messages=1 does not apply to dirsize: every append fits
            assert m.append("Sub" if i else "INBOX", None, None, crlf(message(size)))[0] == "OK"
        m.logout()
        m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        m.login("user1", "pw")
        _, resources = getquotaroot(m, "INBOX")
        m.logout()
        tree = dc.dir / "mail" / "user1"
        with as_vmail():
            quota = Quota.from_settings(DIRSIZE)
            assert quota is not None
            mailboxes = MaildirList(f"maildir:{tree}", quota=quota)
            quota.attach(mailboxes)
            ours = quota.resources("User quota")
            with mailboxes.open("INBOX") as box:
                box.append(b"Subject: one more\n\n" + b"x" * 9000 + b"\n")
            after = quota.resources("User quota")
            mailboxes.close()
    finally:
        dc.cleanup()
    assert set(resources) == {"STORAGE"}  # no MESSAGE resource for dirsize
    assert ours is not None and [(r.name, r.usage, r.limit) for r in ours] \
        == [("STORAGE", *resources["STORAGE"])]
    assert after is not None and after[0].usage >= ours[0].usage + 9
