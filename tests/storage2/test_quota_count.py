"""The ``count`` backend and MOVE against Dovecot: same answers, same GETQUOTAROOT numbers."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import QuotaExceeded
from tests.storage2.conftest import as_vmail, crlf, getquotaroot, message, open_cote, oracle_conf
from tests.support.dovecot import DovecotOracle, dovecot_available

COUNT = {"quota": "count:User quota", "quota_vsizes": "yes",
         "quota_rule": "*:storage=10k:messages=5", "quota_rule2": "Junk:ignore"}
MAILDIR = {"quota": "maildir:Q", "quota_vsizes": "no", "quota_rule": "*:storage=10k",
           "quota_rule2": "Junk:ignore"}


@pytest.fixture(scope="module")
def count_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    # user "md" gets the maildir backend through userdb fields
    extra = {"md": " ".join(f"userdb_{k}={v}" for k, v in MAILDIR.items())}
    dc = DovecotOracle(users={"user1": "pw", "md": "pw"}, extra_conf=oracle_conf(COUNT),
                       passwd_extra=extra)
    dc.start()
    try:
        yield dc
    finally:
        dc.cleanup()


# (operation, args): append size to box, copy/move uid from INBOX to box
OPS: list[tuple[str, str, int]] = [
    ("append", "INBOX", 3000), ("append", "INBOX", 3000), ("append", "INBOX", 3000),
    ("copy", "Other", 1), ("move", "Other", 1), ("move", "Junk", 2), ("append", "Junk", 9000),
    ("append", "INBOX", 2000), ("append", "INBOX", 2000),
]


def dovecot_ops(dc: DovecotOracle, user: str) -> tuple[list[str], object]:
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login(user, "pw")
    m.create("Other")
    m.create("Junk")
    out = []
    for op, box, arg in OPS:
        if op == "append":
            typ, _ = m.append(box, None, None, crlf(message(arg)))
        else:
            m.select("INBOX")
            typ, _ = m._simple_command("UID", op.upper(), str(arg), box)
            m.close()
        out.append(typ)
    root = getquotaroot(m, "INBOX")
    m.logout()
    return out, root


def cote_ops(root: Path, plugin: dict[str, str]) -> tuple[list[str], object]:
    out = []
    with as_vmail():
        mailboxes, quota = open_cote(root, plugin=plugin)
        mailboxes.create("Other")
        mailboxes.create("Junk")
        for op, box, arg in OPS:
            try:
                if op == "append":
                    with mailboxes.open(box) as mb:
                        mb.append(crlf(message(arg)) if plugin is COUNT else message(arg))
                else:
                    with mailboxes.open("INBOX") as src, mailboxes.open(box) as dst:
                        (src.copy if op == "copy" else src.move)([arg], dst)
                out.append("OK")
            except QuotaExceeded:
                out.append("NO")
        names = quota.roots_for("INBOX")
        res = {r.name: (r.usage, r.limit) for n in names for r in quota.resources(n) or []}
        mailboxes.close()
    return out, (names, res)


def test_count_backend_like_dovecot(count_dovecot: DovecotOracle, store: Path) -> None:
    expected = dovecot_ops(count_dovecot, "user1")
    assert "NO" in expected[0]
    assert cote_ops(store / "count", COUNT) == expected
    assert not (store / "count" / "maildirsize").exists()


def test_move_is_not_checked_like_dovecot(count_dovecot: DovecotOracle, store: Path
                                          ) -> None:
    expected = dovecot_ops(count_dovecot, "md")
    assert cote_ops(store / "md", MAILDIR) == expected
    theirs = (count_dovecot.user_maildir("md") / "maildirsize").read_text().split("\n")
    ours = (store / "md" / "maildirsize").read_text().split("\n")
    assert ours[0] == theirs[0] == "10240S"
    # Dovecot recalculates after a MOVE, cote appends +/- lines: the totals agree
    def total(lines: list[str]) -> tuple[int, int]:
        pairs = [tuple(int(x) for x in ln.split()) for ln in lines[1:] if ln]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    assert total(ours) == total(theirs)
