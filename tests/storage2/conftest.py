"""Fixtures for storage part 2 (quota): a quota-enabled Dovecot oracle and cote stores."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from cote.storage import MaildirList
from cote.storage.quota import Quota
from tests.storage.conftest import as_vmail
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import remove_dir, server_dir

PLUGIN = {
    "quota": "maildir:User quota",
    "quota_rule": "*:storage=10k:messages=6",
    "quota_rule2": "Trash:storage=+3k",
    "quota_rule3": "Junk:ignore",
    "quota_grace": "2k",
}

# userdb overrides, as extra passwd-file fields for Dovecot and a mapping for cote
USER_FIELDS: dict[str, dict[str, str]] = {
    "big": {"quota_rule": "*:storage=20k"},
    "nolimit": {"quota_rule": "*:storage=0"},
}


def oracle_conf(plugin: Mapping[str, str]) -> str:
    lines = "".join(f"  {k} = {v}\n" for k, v in plugin.items())
    return f"""
mail_plugins = $mail_plugins quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
{lines}}}
"""


@pytest.fixture(scope="module")
def quota_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    users = {u: "pw" for u in ("user1", "user2", "user3", "user4", "user5", "big", "nolimit",
                               "fromcote", "fromcote2")}
    extra = {u: " ".join(f"userdb_{k}={v}" for k, v in f.items())
             for u, f in USER_FIELDS.items()}
    dc = DovecotOracle(users=users, extra_conf=oracle_conf(PLUGIN), passwd_extra=extra)
    dc.start()
    try:
        yield dc
    finally:
        dc.cleanup()


@pytest.fixture
def store() -> Iterator[Path]:
    d = server_dir("quota-store")
    d.chmod(0o777)
    try:
        yield d
    finally:
        remove_dir(d)


def open_cote(root: Path | str, user: str = "", *, delivery: bool = False,
              plugin: Mapping[str, str] = PLUGIN, **kw: object) -> tuple[MaildirList, Quota]:
    """cote's storage for a Maildir with the quota settings (run inside ``as_vmail``)."""
    quota = Quota.from_settings(plugin, USER_FIELDS.get(user), **kw)  # type: ignore[arg-type]
    assert quota is not None
    if delivery:
        quota = quota.for_delivery()
    mailboxes = MaildirList(f"maildir:{root}", quota=quota)
    quota.attach(mailboxes)
    return mailboxes, quota


def imap_login(dc: DovecotOracle, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login(user, "pw")
    return m


_QUOTA = re.compile(rb'\* QUOTA "?([^"(]*)"? \(([^)]*)\)')


def getquotaroot(m: imaplib.IMAP4, mailbox: str) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Roots and resources (name -> (usage, limit)) from Dovecot's GETQUOTAROOT."""
    typ, data = m._simple_command("GETQUOTAROOT", mailbox)
    assert typ == "OK", data
    roots_raw = m.untagged_responses.pop("QUOTAROOT", [])
    quota_raw = m.untagged_responses.pop("QUOTA", [])
    roots: list[str] = []
    for r in roots_raw:
        assert isinstance(r, bytes)
        roots.extend(x.strip('"') for x in re.findall(r'"[^"]*"|\S+', r.decode())[1:])
    res: dict[str, tuple[int, int]] = {}
    for q in quota_raw:
        assert isinstance(q, bytes)
        items = re.search(rb"\(([^)]*)\)", q)
        assert items is not None
        words = items.group(1).split()
        for i in range(0, len(words), 3):
            res[words[i].decode()] = (int(words[i + 1]), int(words[i + 2]))
    return roots, res


def message(size: int, tag: str = "x") -> bytes:
    """A message of exactly ``size`` bytes with LF line ends (Dovecot stores LF)."""
    head = f"Subject: {tag}\n\n".encode()
    body = size - len(head) - 1
    assert body >= 0
    return head + b"a" * body + b"\n"


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


__all__ = ["as_vmail"]
