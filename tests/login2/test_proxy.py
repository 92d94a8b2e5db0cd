"""Proxying through cote's login processes to a Dovecot backend, against Dovecot as the proxy.

The same passwd-file (extra fields ``proxy host=… port=…``, ``destuser``, ``pass``, ``nologin``
and ``reason``) drives a Dovecot proxy and cote; both sit in front of one Dovecot backend.
Clients see the same bytes from both, and cote logs Dovecot's proxy lines.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cote.demo import make_certificate
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port

MESSAGE = b"Subject: proxied\r\nFrom: a@example.org\r\n\r\nthrough the proxy\r\n"


@dataclass
class Setup:
    backend: DovecotOracle
    front: DovecotOracle  # Dovecot as the proxy: the reference
    cote: CoteServer


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    backend = DovecotOracle(users={"imapu": "secret", "popu": "secret", "badpass": "right",
                                   "real": "realpass", "tlsimap": "secret", "tlsimaps": "secret",
                                   "tlspop": "secret", "strict": "secret"})
    imaps = free_port()
    make_certificate(backend.dir / "cert.pem", backend.dir / "key.pem", "localhost")
    (backend.dir / "masters").write_text("admin:{PLAIN}adminpass\n")
    backend.extra_conf = f"""login_trusted_networks = 127.0.0.0/8
auth_master_user_separator = *
passdb {{
  driver = passwd-file
  args = {backend.dir}/masters
  master = yes
}}
auth_failure_delay = 0
ssl = yes
ssl_cert = <{backend.dir}/cert.pem
ssl_key = <{backend.dir}/key.pem
service imap-login {{
  inet_listener imapsx {{
    port = {imaps}
    ssl = yes
  }}
}}
"""
    backend.start()
    dead = free_port()
    imap, pop3 = backend.ports["imap"], backend.ports["pop3"]
    cote_ports = {"imap": free_port()}  # known before cote's passwd-file is written
    front = DovecotOracle(
        users={"imapu": "secret", "popu": "secret", "badpass": "wrong", "alias": "aliaspass",
               "blocked": "x", "blocked2": "x", "imapdead": "secret", "popbad": "wrong",
               "tlsimap": "secret", "tlsimaps": "secret", "tlspop": "secret",
               "strict": "secret", "maybeu": "secret", "byip": "secret", "ref1": "x",
               "ref2": "x", "mastered": "x", "popmastered": "x"},
        passwd_extra={
            "imapu": f"proxy host=127.0.0.1 port={imap}",
            "popu": f"proxy host=127.0.0.1 port={pop3}",
            "badpass": f"proxy host=127.0.0.1 port={imap}",
            "popbad": f"proxy host=127.0.0.1 port={pop3} destuser=badpass",
            "alias": f"proxy host=127.0.0.1 port={pop3} destuser=real pass=realpass",
            "blocked": "nologin reason=Moved_elsewhere",
            "blocked2": "nologin",
            "imapdead": f"proxy host=127.0.0.1 port={dead}",
            "tlsimap": f"proxy host=127.0.0.1 port={imap} starttls=any-cert",
            "tlsimaps": f"proxy host=127.0.0.1 port={imaps} ssl=any-cert",
            "tlspop": f"proxy host=127.0.0.1 port={pop3} starttls=any-cert",
            "strict": f"proxy host=127.0.0.1 port={imaps} ssl=yes",
            "ref1": "nologin host=other.example.org",
            "mastered": f"proxy host=127.0.0.1 port={imap} destuser=imapu master=admin "
                        "pass=adminpass",
            "popmastered": f"proxy host=127.0.0.1 port={pop3} destuser=popu master=admin "
                           "pass=adminpass",
            "ref2": "nologin host=other.example.org port=1143 reason=Moved",
            "maybeu": f"proxy_maybe host=127.0.0.1 port={cote_ports['imap']}",
            "byip": f"proxy host=backend.invalid hostip=127.0.0.1 port={imap} destuser=imapu",
        }, extra_conf="auth_failure_delay = 0\n").start()
    conn = imaplib.IMAP4("127.0.0.1", imap)
    conn.login("popu", "secret")
    conn.append("INBOX", "", None, MESSAGE)
    conn.logout()
    cote = CoteServer(mail_location=f"maildir:{front.dir}/mail/%u",
                      passwd_file=front.dir / "users", protocols="imap pop3",
                      extra_conf="disable_plaintext_auth = no\nauth_failure_delay = 0\n")
    old_imap = cote.ports["imap"]
    try:
        cote.ports["imap"] = cote_ports["imap"]
        cote.config_path.write_text(cote.config_path.read_text().replace(
            f"port = {old_imap}\n", f"port = {cote_ports['imap']}\n"))
        cote.start()
        yield Setup(backend, front, cote)
    finally:
        cote.cleanup()
        front.cleanup()
        backend.cleanup()


def transcript(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each line and collect what came back until the server goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        answers = [read_reply(s)]
        for line in lines:
            s.sendall(line)
            answers.append(read_reply(s))
    return [re.sub(rb"\(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)", b"(t secs)", a)
            for a in answers]


def read_reply(s: socket.socket) -> bytes:
    data = b""
    s.settimeout(15)
    while not data.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    s.settimeout(0.3)
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def same_answers(setup: Setup, proto: str, lines: list[bytes]) -> list[bytes]:
    theirs = transcript(setup.front.ports[proto], lines)
    ours = transcript(setup.cote.ports[proto], lines)
    assert ours == theirs, (ours, theirs)
    return ours


def test_imaplib_session_through_the_proxy(setup: Setup) -> None:
    ours = imaplib.IMAP4("127.0.0.1", setup.cote.ports["imap"])
    typ, data = ours.login("imapu", "secret")
    assert typ == "OK" and data[0].endswith(b"Logged in")
    assert ours.append("INBOX", "(\\Flagged)", None, MESSAGE)[0] == "OK"
    assert ours.select("INBOX") == ("OK", [b"1"])
    typ, fetched = ours.fetch("1", "(FLAGS BODY.PEEK[])")
    assert typ == "OK" and fetched[0][1] == MESSAGE and b"\\Flagged" in fetched[0][0]
    assert ours.logout()[0] == "BYE"
    direct = imaplib.IMAP4("127.0.0.1", setup.backend.ports["imap"])
    direct.login("imapu", "secret")
    direct.select("INBOX")
    assert direct.fetch("1", "(BODY.PEEK[])")[1][0][1] == MESSAGE
    direct.logout()
    started = setup.cote.wait_for_log("proxy(imapu,")
    assert re.search(
        rf"imap-login: Info: proxy\(imapu,127\.0\.0\.1:{setup.backend.ports['imap']}\): "
        r"Started proxying to <127\.0\.0\.1> \(\d+\.\d{3} secs\): user=<imapu>, method=PLAIN, "
        r"rip=127\.0\.0\.1, lip=127\.0\.0\.1, secured, session=<[^>]+>$", started[0])
    # imaplib closes as soon as it has the LOGOUT answer, racing the backend's close.
    ended = setup.cote.wait_for_log("proxy(imapu,127.0.0.1:" + str(setup.backend.ports["imap"])
                                    + "): Disconnected by ")
    assert ended, setup.cote.log_text()
    assert re.search(r"proxy\(imapu,[^)]+\): Disconnected by (server|client) \(\d+s idle, "
                     r"in=\d+, out=\d+\): user=<imapu>", ended[0])


def test_imap_login_answer_is_the_backends(setup: Setup) -> None:
    same_answers(setup, "imap", [b"a CAPABILITY\r\n", b"b LOGIN imapu secret\r\n",
                                 b"c LOGOUT\r\n"])
    # Commands pipelined after LOGIN reach the backend once it has logged in.
    answers = same_answers(setup, "imap", [b"b LOGIN imapu secret\r\nc NOOP\r\n",
                                           b"d LOGOUT\r\n"])
    assert b"\r\nc OK NOOP completed" in answers[1]


def test_poplib_session_through_the_proxy(setup: Setup) -> None:
    ours = poplib.POP3("127.0.0.1", setup.cote.ports["pop3"], timeout=10)
    assert ours.user("popu") == b"+OK"
    assert ours.pass_("secret") == b"+OK Logged in."
    direct = poplib.POP3("127.0.0.1", setup.backend.ports["pop3"], timeout=10)
    direct.user("popu")
    direct.pass_("secret")
    assert ours.stat() == direct.stat() == (1, len(MESSAGE))
    assert ours.retr(1) == direct.retr(1)
    assert ours.uidl() == direct.uidl()
    direct.quit()
    assert ours.quit() == b"+OK Logging out."
    lines = setup.cote.wait_for_log("proxy(popu,")
    assert any("pop3-login: Info: proxy(popu,127.0.0.1:" in x and "Started proxying to <127.0.0.1>"
               in x for x in lines)


def test_pop3_transcript_and_destuser(setup: Setup) -> None:
    same_answers(setup, "pop3", [b"USER popu\r\n", b"PASS secret\r\n", b"STAT\r\n",
                                 b"QUIT\r\n"])
    same_answers(setup, "pop3", [b"USER alias\r\n", b"PASS aliaspass\r\n", b"STAT\r\n",
                                 b"QUIT\r\n"])
    [line] = setup.cote.wait_for_log("proxy(alias,")[:1]
    assert "Started proxying to <127.0.0.1> as user real (" in line


def test_wrong_password_at_the_backend(setup: Setup) -> None:
    answers = same_answers(setup, "imap", [b"a LOGIN badpass wrong\r\n", b"b LOGOUT\r\n"])
    assert answers[1] == b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    answers = same_answers(setup, "pop3", [b"USER popbad\r\n", b"PASS wrong\r\n", b"QUIT\r\n"])
    assert answers[2] == b"-ERR [AUTH] Authentication failed.\r\n"
    failed = setup.cote.wait_for_log("proxy(badpass,")
    assert re.search(r"imap-login: Info: proxy\(badpass,127\.0\.0\.1:\d+\): Login failed: "
                     r"\[AUTHENTICATIONFAILED\] Authentication failed\.: user=<badpass>", failed[0])
    assert setup.cote.wait_for_log("Disconnected: Aborted login by logging out (proxy dest "
                                   "auth failed): user=<badpass>")


def test_nologin_and_reason(setup: Setup) -> None:
    answers = same_answers(setup, "imap", [b"a LOGIN blocked x\r\n", b"b LOGIN blocked2 x\r\n",
                                           b"c LOGOUT\r\n"])
    assert answers[1] == b"a NO [CONTACTADMIN] Moved_elsewhere\r\n"
    same_answers(setup, "pop3", [b"USER blocked\r\n", b"PASS x\r\n", b"USER blocked2\r\n",
                                 b"PASS x\r\n", b"QUIT\r\n"])
    assert setup.cote.wait_for_log("Disconnected: Aborted login by logging out (internal "
                                   "failure, 2 successful auths): user=<blocked2>")


def test_referrals(setup: Setup) -> None:
    answers = same_answers(setup, "imap", [b"a LOGIN ref1 x\r\n", b"b LOGIN ref2 x\r\n",
                                           b"c AUTHENTICATE PLAIN AHJlZjEAeA==\r\n",
                                           b"d LOGOUT\r\n"])
    assert answers[1] == (b"a NO [REFERRAL imap://ref1;AUTH=PLAIN@other.example.org/] Try this "
                          b"server instead.\r\n")
    assert answers[2].startswith(b"b NO [REFERRAL imap://ref2;AUTH=PLAIN@other.example.org:1143/]")
    same_answers(setup, "pop3", [b"USER ref1\r\n", b"PASS x\r\n", b"USER ref2\r\n",
                                 b"PASS x\r\n", b"QUIT\r\n"])


def test_backend_down_is_a_temporary_failure(setup: Setup) -> None:
    answers = same_answers(setup, "imap", [b"a LOGIN imapdead secret\r\n", b"b LOGOUT\r\n"])
    assert answers[1] == b"a NO [UNAVAILABLE] Account is temporarily unavailable.\r\n"
    assert setup.cote.wait_for_log("proxy(imapdead,127.0.0.1:")


def test_backend_learns_the_client_and_session(setup: Setup) -> None:
    """A backend that trusts the proxy logs the proxy's session id (IMAP ID, POP3 XCLIENT)."""
    imap = imaplib.IMAP4("127.0.0.1", setup.cote.ports["imap"])
    imap.login("imapu", "secret")
    imap.logout()
    pop = poplib.POP3("127.0.0.1", setup.cote.ports["pop3"], timeout=10)
    pop.user("popu")
    pop.pass_("secret")
    pop.quit()
    time.sleep(0.5)
    for user, proto in (("imapu", "imap"), ("popu", "pop3")):
        ours = [x for x in setup.cote.wait_for_log(f"proxy({user},") if "Started" in x]
        session = re.search(r"session=<([^>]+)>", ours[-1])
        assert session is not None
        backend_log = setup.backend.log_path.read_text()
        assert re.search(rf"{proto}-login: Info: Login: user=<{user}>, method=PLAIN, "
                         rf"rip=127\.0\.0\.1, lip=127\.0\.0\.1, mpid=\d+, secured, "
                         rf"session=<{re.escape(session.group(1))}>", backend_log), backend_log


def test_tls_to_the_backend(setup: Setup) -> None:
    """starttls=any-cert (IMAP STARTTLS, POP3 STLS) and ssl=any-cert (implicit TLS)."""
    for user in ("tlsimap", "tlsimaps"):
        conn = imaplib.IMAP4("127.0.0.1", setup.cote.ports["imap"])
        assert conn.login(user, "secret")[0] == "OK"
        assert conn.select("INBOX")[0] == "OK"
        conn.logout()
    pop = poplib.POP3("127.0.0.1", setup.cote.ports["pop3"], timeout=10)
    pop.user("tlspop")
    assert pop.pass_("secret") == b"+OK Logged in."
    assert pop.stat() == (0, 0)
    pop.quit()
    time.sleep(0.5)
    backend_log = setup.backend.log_path.read_text()
    for user in ("tlsimap", "tlsimaps", "tlspop"):
        assert re.search(rf"-login: Info: Login: user=<{user}>, .*, TLS, session=", backend_log), \
            backend_log


def test_unverifiable_backend_certificate(setup: Setup) -> None:
    """ssl=yes checks the backend's certificate: a self-signed one fails, as in Dovecot."""
    answers = same_answers(setup, "imap", [b"a LOGIN strict secret\r\n", b"b LOGOUT\r\n"])
    assert answers[1] == b"a NO [UNAVAILABLE] Account is temporarily unavailable.\r\n"


def test_proxy_maybe_to_ourselves_logs_in_locally(setup: Setup) -> None:
    conn = imaplib.IMAP4("127.0.0.1", setup.cote.ports["imap"])
    assert conn.login("maybeu", "secret")[0] == "OK"
    conn.logout()
    assert setup.cote.wait_for_log("imap-login: Info: Login: user=<maybeu>, method=PLAIN")
    assert "proxy(maybeu," not in setup.cote.log_text()


def test_hostip_is_where_the_proxy_connects(setup: Setup) -> None:
    conn = imaplib.IMAP4("127.0.0.1", setup.cote.ports["imap"])
    assert conn.login("byip", "secret")[0] == "OK"
    conn.logout()
    [line] = setup.cote.wait_for_log("proxy(byip,")[:1]
    assert "Started proxying to <backend.invalid> as user imapu" in line


def test_master_user_login_at_the_backend(setup: Setup) -> None:
    """``master``/``pass``: the proxy logs in as the master user on behalf of destuser."""
    answers = same_answers(setup, "imap", [b"a LOGIN mastered x\r\n", b"b LOGOUT\r\n"])
    assert answers[1].startswith(b"a OK ")
    answers = same_answers(setup, "pop3", [b"USER popmastered\r\n", b"PASS x\r\n",
                                           b"STAT\r\n", b"QUIT\r\n"])
    assert answers[2] == b"+OK Logged in.\r\n" and answers[3] == b"+OK 1 %d\r\n" % len(MESSAGE)
