"""Shared namespaces (``prefix = shared/%%u/``): other users' mailboxes through a userdb
lookup hook, against Dovecot configured the same way on the same files."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from cote.config import load
from cote.storage import InvalidName, MailboxNotFound
from cote.storage.namespaces import Namespaces
from tests.storage2.conftest import as_vmail
from tests.storage2.test_namespaces import parse_list
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle, dovecot_available

SHARED = r"""
namespace inbox {
  inbox = yes
  separator = /
}
namespace shared {
  type = shared
  separator = /
  prefix = shared/%%u/
  location = maildir:%%h/Maildir:INDEXPVT=~/Maildir/shared/%%u
  subscriptions = no
  list = children
}
"""
USERS = {"user1": "pw", "bob": "pw", "carol": "pw"}
PATTERNS = ("*", "%", "shared/*", "shared/%", "shared/%/%")
FLAGS_RE = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")


@pytest.fixture(scope="module")
def shared_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users=USERS, extra_conf=SHARED, mail_location="maildir:~/Maildir")
    dc.start()
    try:
        for user in ("bob", "carol"):  # their stores exist (Dovecot creates them at login)
            m = login(dc, user)
            m.select("INBOX")
            if user == "bob":
                m.create("Work")
                m.create("Work/Sub")
                for i in range(3):
                    m.append("INBOX", None, None, b"Subject: m%d\r\n\r\nbody\r\n" % i)
                m.select("INBOX")
                m.store("1", "+FLAGS", "(\\Flagged \\Seen)")
                m.store("3", "+FLAGS", "(\\Draft)")
            m.logout()
        yield dc
    finally:
        dc.cleanup()


@pytest.fixture(scope="module")
def shared_cote(shared_dovecot: DovecotOracle) -> Iterator[CoteServer]:
    """A cote master serving the same users and files as the Dovecot oracle."""
    cote = CoteServer(mail_location="maildir:~/Maildir",
                      passwd_file=shared_dovecot.dir / "users", protocols="imap",
                      extra_conf=SHARED)
    cote.start()
    try:
        yield cote
    finally:
        cote.cleanup()


def login(dc: DovecotOracle, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    m.login(user, USERS[user])
    return m


def home(dc: DovecotOracle, user: str) -> Path:
    return dc.dir / "home" / user


def open_cote(dc: DovecotOracle) -> Namespaces:
    def lookup(user: str) -> Mapping[str, str] | None:
        return {"home": str(home(dc, user))} if user in USERS else None

    return Namespaces.from_config(load(str(dc.config_path)), {}, user="user1",
                                  home=str(home(dc, "user1")),
                                  mail_location=f"maildir:{home(dc, 'user1')}/Maildir",
                                  user_lookup=lookup)


def dovecot_flags(m: imaplib.IMAP4) -> dict[int, set[str]]:
    out = {}
    for line in m.fetch("1:*", "(UID FLAGS)")[1]:
        assert isinstance(line, bytes)
        hit = FLAGS_RE.search(line)
        assert hit, line
        out[int(hit.group(1))] = set(hit.group(2).decode().split())
    return out


def test_other_users_mailboxes_like_dovecot(shared_dovecot: DovecotOracle) -> None:
    dc = shared_dovecot
    m = login(dc, "user1")
    want: dict[str, object] = {"namespace": m.namespace()[1][0]}
    want["before"] = {p: parse_list(m.list('""', p)[1]) for p in PATTERNS}
    assert m.select("shared/bob/INBOX")[0] == "OK"
    want["flags"] = dovecot_flags(m)
    m.close()
    want["status"] = m.status("shared/bob/Work", "(MESSAGES UIDNEXT)")[1][0]
    assert m.select("shared/nobody/INBOX")[0] == "NO"
    assert m.select("shared/carol/INBOX")[0] == "OK"
    want["after"] = {p: parse_list(m.list('""', p)[1]) for p in PATTERNS}
    m.logout()

    with as_vmail():
        ns = open_cote(dc)
        try:
            personal, other, public = ns.namespace_data()
            assert (personal, other, public) == ([("", "/")], [("shared/", "/")], [])
            assert want["namespace"] == b'(("" "/")) (("shared/" "/")) NIL'
            got_before = {p: {i.name: i.attributes for i in ns.list(p)} for p in PATTERNS}
            with ns.open("shared/bob/INBOX") as box:
                flags = {uid: set(box.flag_names(f))
                         for uid, f in zip(box.uids, box.flags, strict=True)}
            st = ns.status("shared/bob/Work")
            with pytest.raises(MailboxNotFound):
                ns.open("shared/nobody/INBOX")
            with pytest.raises(InvalidName):
                ns.open("shared/bob")
            ns.open("shared/carol/INBOX").close()
            got_after = {p: {i.name: i.attributes for i in ns.list(p)} for p in PATTERNS}
            assert ns.list("*", subscribed=True) == []  # subscriptions = no
        finally:
            ns.close()
    assert got_before == want["before"]
    assert got_after == want["after"]
    assert want["status"] == f"shared/bob/Work (MESSAGES {st.messages} UIDNEXT {st.uidnext})" \
        .encode()
    # INDEXPVT keeps \Seen private: user1 does not see bob's \Seen
    assert want["flags"] == {1: {"\\Flagged"}, 2: set(), 3: {"\\Draft"}}
    assert flags == want["flags"]


def test_changes_through_the_shared_namespace_reach_the_owner(
        shared_dovecot: DovecotOracle) -> None:
    dc = shared_dovecot
    with as_vmail():
        ns = open_cote(dc)
        try:
            ns.create("shared/bob/FromUser1")
            with ns.open("shared/bob/INBOX") as box:
                box.store([box.uids[1]], "+", ["\\Answered"])
                uid2 = box.uids[1]
        finally:
            ns.close()
    m = login(dc, "bob")
    names = parse_list(m.list('""', "*")[1])
    m.select("INBOX")
    flags = dovecot_flags(m)
    m.logout()
    assert "FromUser1" in names
    assert "\\Answered" in flags[uid2]


def imap_answers(port: int) -> dict[str, object]:
    """What user1 sees of bob's mailboxes over IMAP (the same script for both servers)."""
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("user1", USERS["user1"])
    out: dict[str, object] = {"namespace": m.namespace()[1][0]}
    out["list before"] = parse_list(m.list('""', "shared/*")[1])
    out["select"] = m.select("shared/bob/INBOX")
    out["fetch"] = m.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1]
    flags = dovecot_flags(m)
    out["flags 2:3"] = {uid: f for uid, f in flags.items() if uid != 1}
    out["flags 1"] = flags[1]
    m.close()
    out["list after"] = parse_list(m.list('""', "shared/*")[1])
    out["list all"] = parse_list(m.list('""', "*")[1])
    out["nobody"] = m.select("shared/nobody/INBOX")[0]
    m.logout()
    return out


def test_imap_through_a_cote_master_like_dovecot(shared_dovecot: DovecotOracle,
                                                  shared_cote: CoteServer) -> None:
    want = imap_answers(shared_dovecot.ports["imap"])
    got = imap_answers(shared_cote.ports["imap"])
    assert want["list after"] and "shared/bob/Work" in want["list after"]  # type: ignore
    assert want["flags 1"] == {"\\Flagged"}  # bob's \Seen is his own (INDEXPVT)
    for key in want:
        assert (key, got[key]) == (key, want[key])


def private_seen_answers(port: int) -> dict[str, object]:
    """user1 reads and marks bob's mail through shared/bob/ (\\Seen is user1's own), then
    undoes it: the same script for both servers on the same files."""
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("user1", USERS["user1"])
    out: dict[str, object] = {"select": m.select("shared/bob/INBOX")}
    out["store +seen"] = m.store("2", "+FLAGS", "(\\Seen)")
    out["body"] = m.fetch("3", "(BODY[TEXT])")[1]
    out["flags"] = dovecot_flags(m)
    m.close()
    out["status"] = m.status("shared/bob/INBOX", "(MESSAGES UNSEEN)")[1]
    m.select("shared/bob/INBOX")
    out["flags again"] = dovecot_flags(m)
    out["search unseen"] = m.search(None, "UNSEEN")[1]
    out["store -seen"] = m.store("2:3", "-FLAGS", "(\\Seen)")
    out["status after"] = m.status("shared/bob/INBOX", "(MESSAGES UNSEEN)")[1]
    m.logout()
    return out


def test_private_seen_like_dovecot(shared_dovecot: DovecotOracle,
                                   shared_cote: CoteServer) -> None:
    """INDEXPVT: user1 marking bob's mail read keeps it unread for bob (both servers write
    only user1's private index; Dovecot reads bob's files afterwards)."""
    dc = shared_dovecot
    # \Recent goes to the first session that looks, in each server's own index: let one
    # look on both first, so the answers do not depend on which tests ran before this one
    for port in (dc.ports["imap"], shared_cote.ports["imap"]):
        m = imaplib.IMAP4("127.0.0.1", port)
        m.login("user1", USERS["user1"])
        m.select("shared/bob/INBOX")
        m.logout()
    want = private_seen_answers(dc.ports["imap"])
    got = private_seen_answers(shared_cote.ports["imap"])
    # what user1 saw as seen is still seen for user1 in a new cote session
    m = imaplib.IMAP4("127.0.0.1", shared_cote.ports["imap"])
    m.login("user1", USERS["user1"])
    m.select("shared/bob/INBOX")
    m.store("2", "+FLAGS", "(\\Seen)")
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", shared_cote.ports["imap"])
    m.login("user1", USERS["user1"])
    m.select("shared/bob/INBOX")
    again = dovecot_flags(m)
    m.store("2", "-FLAGS", "(\\Seen)")
    m.logout()
    flags = want["flags"]
    assert isinstance(flags, dict) and "\\Seen" in flags[2] and "\\Seen" in flags[3]
    assert "\\Seen" not in flags[1]  # bob's \Seen is bob's
    for key in want:
        assert (key, got[key]) == (key, want[key])
    assert "\\Seen" in again[2] and "\\Seen" not in again[1]
    assert (home(dc, "user1") / "Maildir/shared/bob/cote.index.pvt.sqlite").exists()
    m = login(dc, "bob")
    m.select("INBOX")
    bob = dovecot_flags(m)
    m.logout()
    assert "\\Seen" in bob[1]
    assert "\\Seen" not in bob[2] and "\\Seen" not in bob[3]


def test_private_seen_reaches_the_users_other_sessions(shared_dovecot: DovecotOracle) -> None:
    """A \\Seen user1 sets through shared/bob/ is reported to user1's other session at its
    next sync (as Dovecot's private index log does), never to bob."""
    dc = shared_dovecot
    with as_vmail():
        first, second = open_cote(dc), open_cote(dc)
        try:
            a = first.open("shared/bob/INBOX")
            b = second.open("shared/bob/INBOX")
            uid = a.uids[1]
            assert "\\Seen" not in b.flag_names(b.flags[1])
            a.store([uid], "+", ["\\Seen"])
            assert b.sync().flags_changed == [uid]
            assert "\\Seen" in b.flag_names(b.flags[1])
            assert b.sync().flags_changed == []
            a.store([uid], "-", ["\\Seen"])
            assert b.sync().flags_changed == [uid]
            assert "\\Seen" not in b.flag_names(b.flags[1])
            assert a.sync().flags_changed == []  # its own change is in its view already
            a.close()
            b.close()
        finally:
            first.close()
            second.close()
    assert not any("S" in p.name.rpartition(":2,")[2]
                   for p in (home(dc, "bob") / "Maildir" / "cur").iterdir()
                   if "Subject: m0" not in p.read_text(errors="replace"))  # bob's own \Seen
