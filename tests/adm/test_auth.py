"""coteadm auth/user against doveadm on the same passwd-file: output, stderr and exit codes."""

from __future__ import annotations

import pytest

from tests.adm.conftest import Pair


@pytest.mark.parametrize("args", [
    ("auth", "test", "user1", "pass1"),
    ("auth", "test", "user1", "bad"),
    ("auth", "test", "nouser", "x"),
    ("auth", "test", "-x", "service=imap", "user1", "pass1"),
    ("auth", "test", "-a", "/nonexistent", "user1", "pass1"),
    ("auth", "lookup", "nouser"),
    ("auth", "lookup", "-f", "user", "user1"),
    ("auth", "cache", "flush"),
    ("auth", "cache", "flush", "user1"),
    ("user", "user1"),
    ("user", "user2"),
    ("user", "nouser"),
    ("user", "user1", "user2"),
    ("user", "-u", "user1"),
    ("user", "-u", "user2"),
    ("user", "-u", "nouser"),
    ("user", "-f", "home", "user1"),
    ("user", "-f", "uid", "user1", "user2"),
    ("user", "-e", "%u %n %d %h x", "user1"),
    ("user", "-e", "%{home}/%{userdb:uid}", "user1"),
    ("user", "-e", "%u", "nouser"),
    ("user", "-u", "-e", "x", "user1"),
    ("user", "*"),
    ("user", "u*2"),
    ("-f", "tab", "user", "user1"),
    ("-f", "table", "user", "user2"),
    ("-f", "flow", "user", "user1"),
    ("-f", "pager", "user", "user1"),
    ("-f", "json", "user", "user1"),
    ("-f", "json", "user", "nouser"),
    ("-f", "tab", "auth", "lookup", "-f", "user", "user1"),
])
def test_same_as_doveadm(pair: Pair, args: tuple[str, ...]) -> None:
    assert pair.coteadm(*args) == pair.doveadm(*args)


def test_auth_login_userdb_fields(pair: Pair) -> None:
    ours = pair.coteadm("auth", "login", "user1", "pass1")
    theirs = pair.doveadm("auth", "login", "user1", "pass1")
    assert ours.rc == theirs.rc == 0
    assert ours.out == theirs.out
    assert pair.coteadm("auth", "login", "user1", "bad") == \
        pair.doveadm("auth", "login", "user1", "bad")


def test_auth_lookup_found(pair: Pair) -> None:
    ours = pair.coteadm("auth", "lookup", "user1", "nouser")
    theirs = pair.doveadm("auth", "lookup", "user1", "nouser")
    assert ours.rc == theirs.rc == 67
    assert ours.out == theirs.out


def test_user_socket_missing(pair: Pair) -> None:
    ours = pair.coteadm("user", "-a", "/nonexistent", "user1")
    theirs = pair.doveadm("user", "-a", "/nonexistent", "user1")
    assert ours == theirs


def test_daemon_down_lookup(pair: Pair) -> None:
    ours = pair.coteadm("-o", "base_dir=/nonexistent", "auth", "lookup", "user1")
    theirs = pair.doveadm("-o", "base_dir=/nonexistent", "auth", "lookup", "user1")
    assert (ours.rc, ours.out, ours.err) == (theirs.rc, theirs.out, theirs.err)
    assert ours.rc == 75


def test_unknown_formatter(pair: Pair) -> None:
    ours = pair.coteadm("-f", "bogus", "user", "user1")
    assert ours.rc == pair.doveadm("-f", "bogus", "user", "user1").rc == 75
    assert "Unknown print formatter: bogus" in ours.err
