"""coteadm who/kick/penalty and the master commands against a running cote with clients."""

from __future__ import annotations

import imaplib
import re
import time

import pytest

from tests.adm.conftest import Pair


def _count_lines(text: str) -> int:
    return len(text.splitlines())


def test_who_kick_with_a_client(pair: Pair) -> None:
    # an empty who table / no-one-to-kick answer is byte-identical to doveadm's
    assert pair.coteadm("who") == pair.doveadm("who")
    assert pair.coteadm("who", "-1") == pair.doveadm("who", "-1")
    assert pair.coteadm("kick", "user1") == pair.doveadm("kick", "user1")
    assert pair.coteadm("kick").rc == pair.doveadm("kick").rc == 64

    # Both sides get a real IMAP session: the mail process registers it with anvil.
    ours = imaplib.IMAP4("127.0.0.1", pair.cote.ports["imap"])
    theirs = imaplib.IMAP4("127.0.0.1", pair.dovecot.ports["imap"])
    try:
        ours.login("user1", "pass1")
        theirs.login("user1", "pass1")
        deadline = time.monotonic() + 5
        while not ("user1" in pair.doveadm("who").out and "user1" in pair.coteadm("who").out) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = re.compile(r"\b\d{2,}\b")
        for args in (("who",), ("who", "-1"), ("-f", "tab", "who"), ("who", "user*"),
                     ("who", "127.0.0.0/8"), ("who", "nobody"), ("who", "10.0.0.0/8"),
                     ("-f", "flow", "who", "-1"), ("-f", "json", "who")):
            c, d = pair.coteadm(*args), pair.doveadm(*args)
            assert (c.rc, pids.sub("N", c.out), c.err) == \
                (d.rc, pids.sub("N", d.out), d.err), args
        assert "user1" in pair.coteadm("who").out
        assert pair.coteadm("kick", "nobody") == pair.doveadm("kick", "nobody")
        c, d = pair.coteadm("kick", "user1"), pair.doveadm("kick", "user1")
        assert (c.rc, c.out, c.err) == (d.rc, d.out, d.err)
        assert c.rc == 0 and "user1" in c.out
        # the kicked mail process is gone: the client's connection is closed
        with pytest.raises((imaplib.IMAP4.abort, OSError, EOFError)):
            for _ in range(50):
                ours.noop()
                time.sleep(0.1)
        deadline = time.monotonic() + 5
        while "user1" in pair.coteadm("who").out and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "user1" not in pair.coteadm("who").out  # anvil forgot the session
    finally:
        for client in (ours, theirs):
            try:
                client.logout()
            except (imaplib.IMAP4.abort, OSError, EOFError):
                pass


def test_penalty_after_failed_login(pair: Pair) -> None:
    assert _count_lines(pair.coteadm("penalty").out) >= 1
    client = imaplib.IMAP4("127.0.0.1", pair.cote.ports["imap"])
    try:
        try:
            client.login("user1", "wrong")
        except imaplib.IMAP4.error:
            pass
    finally:
        client.shutdown()
    deadline = time.monotonic() + 10
    while True:  # auth reports the failure to anvil after answering the client
        r = pair.coteadm("penalty")
        if "127.0.0.1" in r.out or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.rc == 0
    head, *rows = r.out.splitlines()
    assert head.split() == ["IP", "penalty", "last_penalty", "last_update"]
    assert any(row.split()[0] == "127.0.0.1" for row in rows)
    assert pair.coteadm("penalty", "10.0.0.0/8").out.splitlines()[1:] == []


def test_daemon_down(pair: Pair) -> None:
    for args in (("who",), ("penalty",), ("kick", "user1")):
        r = pair.coteadm("-o", "base_dir=/nonexistent", *args)
        assert r.rc == 75 and "connect(/nonexistent/anvil) failed" in r.err and r.out == ""


def test_master_commands(pair: Pair) -> None:
    r = pair.coteadm("service", "status")
    assert r.rc == 0 and "imap-login" in r.out
    r = pair.coteadm("process", "status", "anvil")
    assert r.rc == 0 and "anvil" in r.out
    assert pair.coteadm("log", "reopen").rc == 0
    r = pair.coteadm("log", "find")
    assert (r.rc, r.out) == (0, pair.doveadm("log", "find").out.replace("dovecot.log",
                                                                          "cote.log"))
    r, d = (pair.coteadm("-o", "base_dir=/nonexistent", "log", "reopen"),
            pair.doveadm("-o", "base_dir=/nonexistent", "log", "reopen"))
    assert (r.rc, r.out, r.err) == (d.rc, d.out, d.err) and r.rc == 75
    assert pair.coteadm("reload").rc == 0
