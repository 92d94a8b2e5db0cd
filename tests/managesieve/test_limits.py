"""mail_max_userip_connections for protocol sieve: the second login from the same user and
IP is refused as Dovecot refuses it, with the same log lines."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.managesieve.support import Pair, SieveClient, plain, server_pair
from tests.support.dovecot import dovecot_available

pytestmark = pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed")
LIMIT = "}\nprotocol sieve {\n  mail_max_userip_connections = 1\n}\nplugin {"


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
