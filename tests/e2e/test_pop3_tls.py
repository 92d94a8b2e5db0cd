"""POP3 over TLS through cote: STLS, implicit TLS (pop3s), real clients, and TLS settings.

With TLS the login process keeps the TLS session and relays plaintext to the pop3 process over
a socketpair; these tests prove the relay carries whole sessions, in both directions.
"""

from __future__ import annotations

import imaplib
import poplib
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

SMALL = b"Subject: small\r\n\r\nhello\r\n"
BIG = b"Subject: big\r\n\r\n" + b"".join(b"line %06d of a bigger message\r\n" % i
                                          for i in range(40000))


@dataclass
class Setup:
    dovecot: DovecotOracle
    cote: CoteServer


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    dc = DovecotOracle(users={"tlsuser": "secret"}).start()
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login("tlsuser", "secret")
    imap.append("INBOX", "", None, SMALL)
    imap.append("INBOX", "", None, BIG)
    imap.logout()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="pop3", tls=True,
                      extra_conf="disable_plaintext_auth = yes\nssl_min_protocol = TLSv1.2\n")
    try:
        cote.start()
        yield Setup(dc, cote)
    finally:
        cote.cleanup()
        dc.cleanup()


def client_context(setup: Setup) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(setup.cote.cert))
    ctx.check_hostname = False
    return ctx


def check_session(pop: poplib.POP3) -> None:
    pop.user("tlsuser")
    assert pop.pass_("secret") == b"+OK Logged in."
    assert pop.stat()[0] == 2
    _, lines, octets = pop.retr(2)
    assert octets == len(BIG)
    assert b"\r\n".join(lines) + b"\r\n" == BIG
    assert pop.quit() == b"+OK Logging out."


def test_stls_then_login(setup: Setup) -> None:
    pop = poplib.POP3("127.0.0.1", setup.cote.ports["pop3"], timeout=20)
    assert "STLS" in pop.capa()
    pop.stls(client_context(setup))
    assert "STLS" not in pop.capa() and "USER" in pop.capa()
    check_session(pop)


def test_implicit_tls(setup: Setup) -> None:
    pop = poplib.POP3_SSL("127.0.0.1", setup.cote.ports["pop3s"], context=client_context(setup),
                          timeout=20)
    check_session(pop)


def test_plaintext_login_refused_before_stls_on_an_insecure_connection(setup: Setup) -> None:
    # 127.0.0.2 -> 127.0.0.1 is not "secured" (local and remote IP differ).
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(20)
    sock.connect(("127.0.0.1", setup.cote.ports["pop3"]))
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"USER tlsuser\r\n")
    assert f.readline() == (b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                            b"(SSL/TLS) connections.\r\n")
    f.close()
    sock.close()


def test_tls_1_2_client_is_accepted(setup: Setup) -> None:
    """The positive control for the refusal below: the server's floor is TLS 1.2."""
    ctx = client_context(setup)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    pop = poplib.POP3_SSL("127.0.0.1", setup.cote.ports["pop3s"], context=ctx, timeout=20)
    assert pop.sock.version() == "TLSv1.2"
    pop.quit()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_client_is_refused(setup: Setup) -> None:
    ctx = client_context(setup)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        poplib.POP3_SSL("127.0.0.1", setup.cote.ports["pop3s"], context=ctx, timeout=20)


def test_openssl_s_client_starttls_pop3(setup: Setup) -> None:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{setup.cote.ports['pop3']}",
         "-starttls", "pop3", "-quiet", "-CAfile", str(setup.cote.cert)],
        input=b"USER tlsuser\r\nPASS secret\r\nSTAT\r\nQUIT\r\n", capture_output=True, timeout=30)
    assert b"+OK Logged in.\r\n+OK 2 " in result.stdout, result.stdout + result.stderr


def test_curl_pop3s_lists_and_retrieves(setup: Setup) -> None:
    curl = shutil.which("curl")
    assert curl, "curl is missing (Debian package curl)"
    base = f"pop3s://127.0.0.1:{setup.cote.ports['pop3s']}"
    common = [curl, "-s", "--cacert", str(setup.cote.cert), "--user", "tlsuser:secret",
              "--max-time", "30"]
    listing = subprocess.run([*common, f"{base}/"], capture_output=True, check=True)
    assert listing.stdout.splitlines() == [b"1 %d" % len(SMALL), b"2 %d" % len(BIG)]
    retrieved = subprocess.run([*common, f"{base}/1"], capture_output=True, check=True)
    assert retrieved.stdout == SMALL
