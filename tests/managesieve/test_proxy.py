"""managesieve-login as a proxy (passdb ``proxy`` fields) in front of Dovecot's ManageSieve.

The passdb says ``proxy host=127.0.0.1 port=<Dovecot's> destuser=...``: the client logs in
to cote and works on the backend's session; a refusal by the backend reaches the client as
the answer to its AUTHENTICATE; the log lines are the login proxy's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.managesieve.support import Pair, SieveClient, plain, server_pair
from tests.support.dovecot import dovecot_available

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed")]
PROXIED = {"viaproxy": "proxy=y host=127.0.0.1 port={backend} destuser=user1 pass=pass1",
           "refused": "proxy=y host=127.0.0.1 port={backend} destuser=user1 pass=wrong"}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with server_pair(proxied=PROXIED) as p:
        yield p


def test_proxied_session_works_on_the_backend(pair: Pair) -> None:
    pair.reset_home("user1")
    client = SieveClient(pair.ports["cote"])
    try:
        assert client.command(f'AUTHENTICATE "PLAIN" "{plain("viaproxy", "proxypass")}"\r\n'
                              .encode()) == b'OK "Logged in."\r\n'
        assert client.command(b'PUTSCRIPT "p" "keep;"\r\n') == b'OK "PUTSCRIPT completed."\r\n'
        assert client.command(b'SETACTIVE "p"\r\n') == b'OK "Setactive completed."\r\n'
        assert client.command(b"LOGOUT\r\n") == b'OK "Logout completed."\r\n'
    finally:
        client.close()
    assert (pair.home("user1") / "sieve" / "p.sieve").read_bytes() == b"keep;"
    port = pair.ports["dovecot"]
    started = pair.cote.wait_for_log(f"proxy(viaproxy,127.0.0.1:{port}): Started proxying to "
                                     "<127.0.0.1> as user user1")
    assert started, pair.cote.log_text()[-2000:]
    # the backend saw user1 log in (from cote's address)
    assert "managesieve-login: Info: Login: user=<user1>" in pair.dovecot.log_path.read_text()


def test_backend_refusal_reaches_the_client(pair: Pair) -> None:
    client = SieveClient(pair.ports["cote"])
    try:
        reply = client.command(f'AUTHENTICATE "PLAIN" "{plain("refused", "proxypass")}"\r\n'
                               .encode())
        assert reply == b'NO "Authentication failed."\r\n'
        assert client.command(b"NOOP\r\n") == b'OK "NOOP Completed"\r\n'  # still pre-login
    finally:
        client.close()
    assert pair.cote.wait_for_log(f"proxy(refused,127.0.0.1:{pair.ports['dovecot']}): ")
