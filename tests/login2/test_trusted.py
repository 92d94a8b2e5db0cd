"""login_trusted_networks: a trusted proxy names the real client (POP3 XCLIENT, IMAP ID x-*).

cote against Dovecot with the same scripts: same answers (``+OK [XCLIENT]`` greeting, XCLIENT
answers), and the same rip/lip/session in the Login and auth lines. Connections from an
untrusted address (127.0.0.2) change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.login2.differential import Server, both
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

CONF = "login_trusted_networks = 127.0.0.1/32\nauth_verbose = yes\n"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    dc = DovecotOracle(users={"u1": "p1"}, extra_conf=CONF).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="imap pop3", extra_conf="disable_plaintext_auth = no\n" + CONF)
    try:
        cote.start()
        yield (Server("dovecot", dc.ports["pop3"], dc.ports["imap"], dc.log_path.read_text),
               Server("cote", cote.ports["pop3"], cote.ports["imap"], cote.log_text))
    finally:
        cote.cleanup()
        dc.cleanup()


def test_xclient_sets_address_and_session(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "pop3", b"", [
        b"CAPA\r\n", b"XCLIENT ADDR=10.1.2.3 PORT=4444 SESSION=mysession123 TTL=4\r\n",
        b"USER u1\r\n", b"PASS p1\r\n", b"QUIT\r\n"])
    assert answer.startswith(b"+OK [XCLIENT] Dovecot (Debian) ready.\r\n")
    assert b"+OK Updated\r\n" in answer
    assert any("Login: user=<u1>, method=PLAIN, rip=10.1.2.3, lip=127.0.0.1, mpid=N, secured, "
               "session=<mysession123>" in x for x in log), log


def test_xclient_invalid_parameters(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "pop3", b"", [
        b"XCLIENT ADDR=10.1.2.4 FORWARD=abc\r\n", b"XCLIENT ADDR=bad\r\n", b"XCLIENT\r\n",
        b"USER u1\r\n", b"PASS wrong\r\n", b"QUIT\r\n"])
    assert answer.count(b"-ERR Invalid parameters\r\n") == 2
    assert any("passwd-file(u1,10.1.2.4,<>): Password mismatch" in x for x in log), log


def test_xclient_from_an_untrusted_address_is_ignored(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "pop3", b"", [b"XCLIENT ADDR=10.1.2.3\r\n", b"QUIT\r\n"],
                       source="127.0.0.2")
    assert answer == (b"+OK Dovecot (Debian) ready.\r\n+OK You are not from trusted IP - "
                      b"ignoring\r\n+OK Logging out\r\n")
    assert "rip=127.0.0.2" in log[0]


def test_imap_id_forwarded_fields(servers: tuple[Server, Server]) -> None:
    _, log = both(servers, "imap", b"", [
        b'a ID ("x-originating-ip" "10.5.5.5" "x-originating-port" "999" "x-connected-ip" '
        b'"10.6.6.6" "x-connected-port" "143" "x-session-id" "sessABC" "name" "x")\r\n',
        b"b LOGIN u1 p1\r\n", b"c LOGOUT\r\n"])
    assert any("Login: user=<u1>, method=PLAIN, rip=10.5.5.5, lip=10.6.6.6, mpid=N, secured, "
               "session=<sessABC>" in x for x in log), log
    _, log = both(servers, "imap", b"", [
        b'a ID ("x-originating-ip" "bogus" "x-session-ext-id" "ext1")\r\n',
        b"b LOGIN u1 wrong\r\n", b"c LOGOUT\r\n"])
    assert any("passwd-file(u1,127.0.0.1,<ext1>): Password mismatch" in x for x in log), log


def test_imap_id_from_an_untrusted_address_is_ignored(servers: tuple[Server, Server]) -> None:
    _, log = both(servers, "imap", b"", [
        b'a ID ("x-originating-ip" "10.5.5.5" "x-session-id" "sessABC")\r\n', b"c LOGOUT\r\n"],
        source="127.0.0.2")
    assert "rip=127.0.0.2" in log[0] and "sessABC" not in log[0]
