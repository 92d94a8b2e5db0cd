"""Settings of protocol sieve, each compared with Dovecot on the same config:
mail_max_userip_connections (the second login from the same user and IP is refused, with
the same log lines) and managesieve_logout_format with every counter Pigeonhole has."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.managesieve.support import Pair, SieveClient, plain, server_pair
from tests.support.dovecot import dovecot_available

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed")]
FORMAT = ("bytes=%i/%o put=%{put_count}/%{put_bytes} get=%{get_count}/%{get_bytes} "
          "check=%{check_count}/%{check_bytes} del=%{deleted_count} ren=%{renamed_count}")
LIMIT = ("}\nprotocol sieve {\n  mail_max_userip_connections = 1\n"
         f"  managesieve_logout_format = {FORMAT}\n}}\nplugin {{")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with server_pair(extra_plugin=LIMIT) as p:
        yield p


def _log(pair: Pair, server: str) -> str:
    return pair.dovecot.log_path.read_text() if server == "dovecot" else pair.cote.log_text()


def test_second_session_refused(pair: Pair) -> None:
    login = f'AUTHENTICATE "PLAIN" "{plain("user1", "pass1")}"\r\n'.encode()
    replies = {}
    for server in ("dovecot", "cote"):
        first = SieveClient(pair.ports[server])
        assert first.command(login) == b'OK "Logged in."\r\n'
        second = SieveClient(pair.ports[server])
        replies[server] = second.command(login)
        assert second.closed()
        second.close()
        first.close()  # goes away without LOGOUT
    assert replies["cote"] == replies["dovecot"] == \
        b'NO "Maximum number of connections from user+IP exceeded ' \
        b'(mail_max_userip_connections=1)"\r\n'
    refused = re.compile(r"managesieve-login: Info: Disconnected: Maximum number of "
                         r"connections from user\+IP exceeded \(mail_max_userip_connections=1\)"
                         r": user=<user1>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, "
                         r"secured, session=<\S+>")
    closed = re.compile(r"managesieve\(user1\)<\d+><\S+>: Info: Connection closed bytes=0/17")
    for server in ("dovecot", "cote"):
        deadline = time.monotonic() + 5
        while not closed.search(_log(pair, server)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused.search(_log(pair, server)), server
        assert closed.search(_log(pair, server)), server


def test_logout_format_counters(pair: Pair) -> None:
    login = f'AUTHENTICATE "PLAIN" "{plain("user2", "pass2")}"\r\n'.encode()
    for server in ("dovecot", "cote"):
        client = SieveClient(pair.ports[server])
        for command in (login, b'PUTSCRIPT "a" "keep;"\r\n', b'PUTSCRIPT "b" "discard;"\r\n',
                        b'GETSCRIPT "a"\r\n', b'CHECKSCRIPT "stop;"\r\n',
                        b'RENAMESCRIPT "b" "c"\r\n', b'DELETESCRIPT "c"\r\n',
                        b'DELETESCRIPT "a"\r\n', b"LOGOUT\r\n"):
            assert b"OK" in client.command(command), (server, command)
        client.close()
    line = re.compile(r"managesieve\(user2\)<\d+><\S+>: Info: Disconnected: Logged out (.*)")
    found = {}
    for server in ("dovecot", "cote"):
        deadline = time.monotonic() + 5
        while not (found.get(server) or time.monotonic() > deadline):
            found[server] = line.findall(_log(pair, server))
            time.sleep(0.05)
    assert found["cote"] == found["dovecot"] == [
        "bytes=149/259 put=2/13 get=1/5 check=1/5 del=2 ren=1"]
