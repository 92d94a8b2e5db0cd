"""Helpers for the storage tests: act as the mail user, read a store through Dovecot's IMAP."""

from __future__ import annotations

import imaplib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cote import mutf7
from cote.storage.maildir.list import MaildirList
from tests.support.env import mail_user

MailboxState = dict[str, Any]


@contextmanager
def as_vmail() -> Iterator[None]:
    """Run the block with the mail user's effective ids, so every file cote creates belongs to
    the user Dovecot runs as (the test process stays root and switches back afterwards)."""
    user = mail_user()
    old_umask = os.umask(0o077)
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.umask(old_umask)


_FETCH = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


def _flags(raw: bytes) -> frozenset[str]:
    return frozenset(f for f in raw.decode().split() if f != "\\Recent")


def imap_state(port: int, user: str, password: str) -> MailboxState:
    """Everything Dovecot says about a user's mailboxes through a fresh IMAP login."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, password)
    typ, listed = imap.list('""', "*")
    assert typ == "OK"
    names: dict[str, frozenset[str]] = {}
    for line in listed:
        assert isinstance(line, bytes)
        m = re.match(rb'\(([^)]*)\) "(.)" (.*)', line)
        assert m, line
        name = m.group(3).decode().strip('"')
        names[name] = frozenset(m.group(1).decode().split())
    typ, lsub = imap.lsub('""', "*")
    subs = sorted(re.match(rb'\([^)]*\) "." (.*)', x).group(1).decode().strip('"')  # type: ignore[union-attr]
                  for x in lsub if isinstance(x, bytes))
    boxes: dict[str, Any] = {}
    for name, attrs in names.items():
        if "\\Noselect" in attrs:
            continue
        typ, st = imap.status(f'"{name}"', "(MESSAGES UIDNEXT UIDVALIDITY)")
        assert typ == "OK", st
        text = st[0].decode() if isinstance(st[0], bytes) else ""
        vals = dict(re.findall(r"(MESSAGES|UIDNEXT|UIDVALIDITY) (\d+)", text))
        imap.select(f'"{name}"', readonly=True)
        msgs: list[tuple[int, frozenset[str]]] = []
        if int(vals["MESSAGES"]):
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            for item in data:
                raw = item if isinstance(item, bytes) else item[0] if item else b""
                m = _FETCH.search(raw)
                if m:
                    uid, fl = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
                    msgs.append((int(uid), _flags(fl)))
        imap.close()
        boxes[name] = {"uidvalidity": int(vals["UIDVALIDITY"]), "uidnext": int(vals["UIDNEXT"]),
                       "messages": sorted(msgs)}
    imap.logout()
    return {"list": names, "subscriptions": subs, "boxes": boxes}


def cote_state(ml: MaildirList) -> MailboxState:
    """The same picture through cote's storage interface (names in wire form, mUTF-7)."""
    names = {info.name: info.attributes for info in ml.list("*")}
    subs = sorted(mutf7.encode(s) for s in ml.subscriptions())
    boxes: dict[str, Any] = {}
    for name, attrs in names.items():
        if "\\Noselect" in attrs:
            continue
        with ml.open(name, readonly=True) as box:
            msgs = [(uid, frozenset(box.flag_names(bits)))
                    for uid, bits in zip(box.uids, box.flags, strict=True)]
            boxes[mutf7.encode(name)] = {"uidvalidity": box.uidvalidity, "uidnext": box.uidnext,
                           "messages": sorted(msgs)}
    return {"list": {mutf7.encode(k): v for k, v in names.items()}, "subscriptions": subs,
            "boxes": boxes}
