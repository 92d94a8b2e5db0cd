"""``haproxy = yes`` listeners, cote against Dovecot: same headers, same answers, same log lines.

The real client's address from the PROXY header must be what everything sees: the Login line's
rip, the secured flag (v2 SSL TLV), the auth daemon's log (rip in auth_verbose lines). Headers
from untrusted sources, bad headers and silence past haproxy_timeout end the connection with
Dovecot's log lines.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cote.login.haproxy import V2_SIGNATURE, encode_v1, encode_v2
from tests.login2.differential import Server, both
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port


def haproxy_conf(pop3: int, imap: int) -> str:
    return f"""
haproxy_trusted_networks = 127.0.0.1/32
haproxy_timeout = 1s
auth_verbose = yes
service pop3-login {{
  inet_listener pop3h {{
    port = {pop3}
    haproxy = yes
  }}
}}
service imap-login {{
  inet_listener imaph {{
    port = {imap}
    haproxy = yes
  }}
}}
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    ports = [free_port() for _ in range(4)]
    dc = DovecotOracle(users={"u1": "p1"}, extra_conf=haproxy_conf(ports[0], ports[1])).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="imap pop3", extra_conf="disable_plaintext_auth = no\n"
                      + haproxy_conf(ports[2], ports[3]))
    try:
        cote.start()
        yield (Server("dovecot", ports[0], ports[1], dc.log_path.read_text),
               Server("cote", ports[2], ports[3], cote.log_text))
    finally:
        cote.cleanup()
        dc.cleanup()


def test_v1_header_gives_the_real_client_address(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "pop3", encode_v1("10.1.2.3", 4567, "127.0.0.1", 110),
                       [b"USER u1\r\n", b"PASS p1\r\n", b"QUIT\r\n"])
    assert answer.endswith(b"+OK Logged in.\r\n+OK Logging out.\r\n")
    assert any("Login: user=<u1>, method=PLAIN, rip=10.1.2.3, lip=127.0.0.1, mpid=N, "
               "session=<>" in x for x in log), log


def test_v2_ssl_tlv_makes_the_client_secured(servers: tuple[Server, Server]) -> None:
    _, log = both(servers, "pop3", encode_v2("192.0.2.7", 5555, "127.0.0.1", 110, ssl=True),
                  [b"USER u1\r\n", b"PASS p1\r\n", b"QUIT\r\n"])
    assert any("rip=192.0.2.7, lip=127.0.0.1, mpid=N, secured" in x for x in log), log


def test_v2_local_keeps_the_connection_addresses(servers: tuple[Server, Server]) -> None:
    local = V2_SIGNATURE + bytes([0x20, 0x00, 0, 0])
    _, log = both(servers, "imap", local, [b"a LOGOUT\r\n"])
    assert log == ["imap-login: Info: Disconnected: Aborted login by logging out (no auth "
                   "attempts in N secs): rip=127.0.0.1, lip=127.0.0.1, session=<>"]


def test_auth_sees_the_proxied_ip(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "imap", encode_v1("10.7.7.7", 1000, "127.0.0.1", 143),
                       [b"a LOGIN u1 wrong\r\n", b"b LOGOUT\r\n"])
    assert b"a NO [AUTHENTICATIONFAILED] Authentication failed." in answer
    assert any("(u1,10.7.7.7" in x and "Password mismatch" in x for x in log), log


def test_untrusted_source_is_dropped(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "pop3", encode_v1("10.1.2.3", 4567, "127.0.0.1", 110),
                       [b"QUIT\r\n"], source="127.0.0.2")
    assert answer == b""
    assert log == ["pop3-login: Warning: haproxy: Client not trusted (rip=127.0.0.2)"]


def test_bad_header_and_timeout(servers: tuple[Server, Server]) -> None:
    answer, log = both(servers, "pop3", b"PROXY TCP4 10.1.2.3 127.0.0.1 4567 99999\r\n",
                       [b"QUIT\r\n"])
    assert answer == b""
    assert log == ["pop3-login: Error: haproxy(v1): Client disconnected: Proxied local port is "
                   "invalid (port=`99999', rip=127.0.0.1)"]
    answer, log = both(servers, "imap", b"", [], settle=1.5)
    assert log == ["imap-login: Error: haproxy: Client timed out (rip=127.0.0.1)"]
