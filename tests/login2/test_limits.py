"""Connection limits in the login processes: mail_max_userip_connections (anvil), the master's
"all full" signal (the oldest client that has not logged in is dropped), auth penalties per IP.

Texts and log lines are Dovecot 2.3.19's (recorded from the oracle with the same settings).
"""

from __future__ import annotations

import imaplib
import poplib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

LIMIT_TEXT = ("Maximum number of connections from user+IP exceeded "
              "(mail_max_userip_connections=1)")


@pytest.fixture(scope="module")
def cote(store: DovecotOracle) -> Iterator[CoteServer]:
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap pop3", tls=True,
                        extra_conf="""
mail_max_userip_connections = 1
auth_failure_delay = 0
disable_plaintext_auth = no
service imap-login {
  service_count = 0
  process_limit = 1
  client_limit = 3
}
""")
    try:
        yield server.start()
    finally:
        server.cleanup()


def tls_context(cote: CoteServer) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cote.cert))
    ctx.check_hostname = False
    return ctx


def test_userip_limit_imap(cote: CoteServer) -> None:
    first = imaplib.IMAP4_SSL("127.0.0.1", cote.ports["imaps"], ssl_context=tls_context(cote))
    first.login("u1", "p1")
    second = imaplib.IMAP4_SSL("127.0.0.1", cote.ports["imaps"], ssl_context=tls_context(cote))
    with pytest.raises(imaplib.IMAP4.error) as refused:
        second.login("u1", "p1")
    assert str(refused.value) == f"b'[LIMIT] {LIMIT_TEXT}'"
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        second.noop()  # Dovecot disconnects after the refusal
    second.shutdown()
    other = imaplib.IMAP4_SSL("127.0.0.1", cote.ports["imaps"], ssl_context=tls_context(cote))
    assert other.login("u2", "p2")[0] == "OK"  # another user is not counted
    other.logout()
    first.logout()
    time.sleep(0.5)
    again = imaplib.IMAP4_SSL("127.0.0.1", cote.ports["imaps"], ssl_context=tls_context(cote))
    assert again.login("u1", "p1")[0] == "OK"  # the first session's count is gone
    again.logout()
    [line] = cote.wait_for_log("imap-login: Info: Disconnected: Maximum number")
    assert f"Disconnected: {LIMIT_TEXT}: user=<u1>, method=PLAIN, rip=127.0.0.1" in line


def test_userip_limit_pop3(cote: CoteServer) -> None:
    first = poplib.POP3_SSL("127.0.0.1", cote.ports["pop3s"], context=tls_context(cote))
    first.user("u1")
    first.pass_("p1")
    second = poplib.POP3_SSL("127.0.0.1", cote.ports["pop3s"], context=tls_context(cote))
    second.user("u1")
    with pytest.raises(poplib.error_proto) as refused:
        second.pass_("p1")
    assert str(refused.value) == f"b'-ERR [IN-USE] {LIMIT_TEXT}'"
    second.close()
    first.quit()


def test_all_full_drops_the_oldest_unauthenticated_client(cote: CoteServer) -> None:
    """imap-login: one process of 3 clients. A fourth makes the master signal "all full"."""
    time.sleep(1.5)  # earlier tests' connections are gone
    clients = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", cote.ports["imap"]), timeout=10)
        assert s.recv(4096).startswith(b"* OK "), cote.log_text()
        clients.append(s)
        time.sleep(0.2)
    fourth = socket.create_connection(("127.0.0.1", cote.ports["imap"]), timeout=10)
    assert fourth.recv(4096).startswith(b"* OK ")  # room was made for it
    assert clients[0].recv(4096) == b"* BYE Connection queue full\r\n"
    assert clients[0].recv(4096) == b""
    for s in clients[1:]:
        s.sendall(b"a NOOP\r\n")
        assert s.recv(4096) == b"a OK NOOP completed.\r\n"
        s.close()
    fourth.close()
    lines = cote.wait_for_log("Disconnected: Connection queue full")
    assert lines and "imap-login: Info: Disconnected: Connection queue full (no auth attempts " \
        "in" in lines[0] and "rip=127.0.0.1" in lines[0]


def penalty_dump(cote: CoteServer) -> dict[str, int]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(cote.socket_path("anvil-auth-penalty")))
        s.sendall(b"PENALTY-DUMP\n")
        data = b""
        while not data.endswith(b"\n\n") and data != b"\n":
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return {f[0]: int(f[1]) for f in (line.split("\t") for line in data.decode().splitlines()
                                      if line)}


def test_failed_logins_penalise_their_ip_only(cote: CoteServer) -> None:
    bad = socket.create_connection(("127.0.0.1", cote.ports["pop3"]), timeout=15,
                                   source_address=("127.0.0.2", 0))
    bad.recv(4096)
    for attempt in range(2):  # the second answer waits for the penalty (2 s)
        bad.sendall(f"USER u2\r\nPASS wrong{attempt}\r\n".encode())
        answer = b""
        while answer.count(b"\r\n") < 2:
            answer += bad.recv(4096)
        assert answer == b"+OK\r\n-ERR [AUTH] Authentication failed.\r\n"
    bad.sendall(b"USER u2\r\nPASS wrong-again\r\n")  # now waits 4 s
    assert bad.recv(4096) == b"+OK\r\n"
    good = poplib.POP3("127.0.0.1", cote.ports["pop3"], timeout=10)
    good.sock.close()
    good = poplib.POP3("127.0.0.1", cote.ports["pop3"], timeout=10)
    good.user("u2")
    assert good.pass_("p2") == b"+OK Logged in."  # answered while 127.0.0.2 still waits
    bad.settimeout(0.2)
    with pytest.raises(TimeoutError):
        bad.recv(4096)
    good.quit()
    penalties = penalty_dump(cote)
    assert penalties.get("127.0.0.2", 0) >= 2
    assert penalties.get("127.0.0.1", 0) == 0
    bad.close()


def test_userip_limit_counts_plaintext_sessions(cote: CoteServer) -> None:
    """Without TLS the login process keeps nothing of the session: the mail process that
    took it over is what anvil counts."""
    first = imaplib.IMAP4("127.0.0.1", cote.ports["imap"])
    first.login("u2", "p2")
    second = imaplib.IMAP4("127.0.0.1", cote.ports["imap"])
    with pytest.raises(imaplib.IMAP4.error) as refused:
        second.login("u2", "p2")
    assert str(refused.value) == f"b'[LIMIT] {LIMIT_TEXT}'"
    second.shutdown()
    pop = poplib.POP3("127.0.0.1", cote.ports["pop3"])
    pop.user("u2")
    assert pop.pass_("p2").startswith(b"+OK")  # counted per protocol, as Dovecot does
    pop.quit()
    first.logout()
    time.sleep(0.5)
    again = imaplib.IMAP4("127.0.0.1", cote.ports["imap"])
    assert again.login("u2", "p2")[0] == "OK"
    again.logout()
