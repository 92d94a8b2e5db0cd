"""Proxy passdb fields that change how the proxy logs in to the backend: ``proxy_mech``,
``proxy_nopipelining``, ``proxy_noauth``, ``proxy_refresh``, ``proxy_always``.

Dovecot 2.3.19 as a proxy is the reference: the same passwd-file drives it and cote, both in
front of one Dovecot backend. Between each proxy and the backend sits a recording relay (a
plain TCP forwarder) so the tests see what the backend was sent and in which order; the
backend's own ``Login:`` lines show the mechanism it accepted.
"""

from __future__ import annotations

import base64
import imaplib
import os
import poplib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.login2.differential import backend_login_line
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port
from tests.support.listener import ThreadedListener

USERS = ["mplain", "mlogin", "nopipe", "piped", "noauth", "refresh", "always", "badmech",
         "pplain", "plogin", "pnopipe", "ppiped"]


@dataclass
class Connection:
    """One proxied connection as the relay saw it: (direction, chunk), ``>`` to the backend."""

    chunks: list[tuple[str, bytes]] = field(default_factory=list)

    def to_backend(self) -> list[bytes]:
        """Lines the proxy sent to the backend, in order."""
        data = b"".join(c for d, c in self.chunks if d == ">")
        return data.split(b"\r\n")[:-1]


class Relay:
    """Forwards one listening port to the backend's and records every connection."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self.connections: list[Connection] = []
        self.lock = threading.Lock()
        self.listener = ThreadedListener(socket.create_server(("127.0.0.1", self.port)),
                                         self._relay)

    def _relay(self, client: socket.socket) -> None:
        try:
            backend = socket.create_connection(("127.0.0.1", self.target))
        except OSError:  # the backend is gone: the proxy sees the connection closed
            client.close()
            return
        conn = Connection()
        with self.lock:
            self.connections.append(conn)
        for a, b, direction in ((client, backend, ">"), (backend, client, "<")):
            threading.Thread(target=self._pump, args=(a, b, direction, conn),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str,
              conn: Connection) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self.lock:  # the record's order is the order the relay forwarded in
                conn.chunks.append((direction, data))
                try:
                    dst.sendall(data)
                except OSError:
                    break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def last(self) -> Connection:
        with self.lock:
            return self.connections[-1]

    def close(self) -> None:
        self.listener.close()


@dataclass
class Setup:
    backend: DovecotOracle
    dovecot: DovecotOracle  # Dovecot as the proxy: the reference
    cote: CoteServer
    relays: dict[str, Relay]  # "dovecot-imap", "cote-pop3"…: one per proxy and protocol


def extra_fields(imap: int, pop3: int, self_port: int) -> dict[str, str]:
    return {
        "mplain": f"proxy host=127.0.0.1 port={imap} proxy_mech=plain",
        "mlogin": f"proxy host=127.0.0.1 port={imap} proxy_mech=LOGIN",
        "nopipe": f"proxy host=127.0.0.1 port={imap} proxy_nopipelining",
        "piped": f"proxy host=127.0.0.1 port={imap}",
        "noauth": f"proxy host=127.0.0.1 port={imap} proxy_noauth",
        "refresh": f"proxy host=127.0.0.1 port={imap} destuser=piped proxy_refresh=1",
        "always": f"proxy_maybe host=127.0.0.1 port={self_port} proxy_always",
        "badmech": f"proxy host=127.0.0.1 port={imap} proxy_mech=foo",
        "pplain": f"proxy host=127.0.0.1 port={pop3} proxy_mech=plain",
        "plogin": f"proxy host=127.0.0.1 port={pop3} proxy_mech=login",
        "pnopipe": f"proxy host=127.0.0.1 port={pop3} proxy_nopipelining",
        "ppiped": f"proxy host=127.0.0.1 port={pop3}",
    }


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    backend = DovecotOracle(users={u: "secret" for u in USERS},
                            extra_conf="auth_failure_delay = 0\nauth_verbose = yes\n"
                                       "login_trusted_networks = 127.0.0.0/8\n").start()
    relays = {f"{proxy}-{proto}": Relay(backend.ports[proto])
              for proxy in ("dovecot", "cote") for proto in ("imap", "pop3")}
    dovecot = DovecotOracle(users={u: "secret" for u in USERS}, extra_conf="auth_failure_delay = 0\n")
    dovecot.passwd_extra = extra_fields(relays["dovecot-imap"].port,
                                        relays["dovecot-pop3"].port, dovecot.ports["imap"])
    dovecot.start()
    cote_dir = DovecotOracle(users={u: "secret" for u in USERS})  # cote's passwd-file
    cote = CoteServer(mail_location=f"maildir:{cote_dir.dir}/mail/%u",
                      passwd_file=cote_dir.dir / "users", protocols="imap pop3",
                      extra_conf="disable_plaintext_auth = no\nauth_failure_delay = 0\n")
    cote_dir.passwd_extra = extra_fields(relays["cote-imap"].port, relays["cote-pop3"].port,
                                         cote.ports["imap"])
    cote_dir.write_config()
    try:
        cote.start()
        yield Setup(backend, dovecot, cote, relays)
    finally:
        cote.cleanup()
        cote_dir.cleanup()
        dovecot.cleanup()
        backend.cleanup()
        for relay in relays.values():
            relay.close()


def imap_login(port: int, user: str) -> None:
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login(user, "secret")
    assert conn.select("INBOX")[0] == "OK"
    conn.logout()


def pop3_login(port: int, user: str) -> None:
    conn = poplib.POP3("127.0.0.1", port)
    conn.user(user)
    conn.pass_("secret")
    assert conn.stat() == (0, 0)
    conn.quit()


def login_lines(conn: Connection) -> list[bytes]:
    """What the proxy sent to log in, up to its login command: without the ID/XCLIENT/
    CAPABILITY it sends to name the client."""
    lines = []
    for line in conn.to_backend():
        if line.startswith((b"I ID ", b"C CAPABILITY", b"XCLIENT ")):
            continue
        lines.append(line)
        if line.startswith((b"L ", b"PASS ", b"AUTH ")):
            break
    return lines


def both(setup: Setup, protocol: str, user: str) -> tuple[Connection, Connection]:
    """Log in as ``user`` through Dovecot, then cote; the relay's record of each."""
    result = []
    for name, server in (("dovecot", setup.dovecot), ("cote", setup.cote)):
        if protocol == "imap":
            imap_login(server.ports["imap"], user)
        else:
            pop3_login(server.ports["pop3"], user)
        result.append(setup.relays[f"{name}-{protocol}"].last())
    return result[0], result[1]


def assert_same_refusal(setup: Setup, user: str) -> None:
    """Dovecot and cote refuse ``user``'s IMAP login with the same temporary failure."""
    answers = []
    for server in (setup.dovecot, setup.cote):
        conn = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
        with pytest.raises(imaplib.IMAP4.error) as refused:
            conn.login(user, "secret")
        answers.append(str(refused.value))
        conn.shutdown()
    assert answers[0] == answers[1] and "UNAVAILABLE" in answers[1], answers


# -- proxy_mech --------------------------------------------------------------------------------
def test_imap_proxy_mech_plain_and_login(setup: Setup) -> None:
    plain = base64.b64encode(b"mplain\0mplain\0secret")
    theirs, ours = both(setup, "imap", "mplain")
    # The banner has SASL-IR: the PLAIN message goes with the command, as Dovecot sends it.
    assert login_lines(ours) == login_lines(theirs) == [b"L AUTHENTICATE PLAIN " + plain]
    assert "method=PLAIN" in backend_login_line(setup.backend.log_path, "imap", "mplain")
    theirs, ours = both(setup, "imap", "mlogin")
    # LOGIN: empty initial response, then the user and the password at the server's prompts.
    expected = [b"L AUTHENTICATE LOGIN =", base64.b64encode(b"mlogin"),
                base64.b64encode(b"secret")]
    assert ours.to_backend()[-5:-2] == theirs.to_backend()[-5:-2] == expected
    assert "method=LOGIN" in backend_login_line(setup.backend.log_path, "imap", "mlogin")
    # Without proxy_mech the backend gets LOGIN.
    _, ours = both(setup, "imap", "piped")
    assert login_lines(ours) == [b'L LOGIN "piped" "secret"']


def test_pop3_proxy_mech_plain_and_login(setup: Setup) -> None:
    theirs, ours = both(setup, "pop3", "pplain")
    plain = base64.b64encode(b"pplain\0pplain\0secret")
    assert login_lines(ours) == login_lines(theirs)[:1] == [b"AUTH PLAIN " + plain]
    theirs, ours = both(setup, "pop3", "plogin")
    expected = [b"AUTH LOGIN =", base64.b64encode(b"plogin"), base64.b64encode(b"secret")]
    assert ours.to_backend()[1:4] == theirs.to_backend()[1:4] == expected
    assert "method=LOGIN" in backend_login_line(setup.backend.log_path, "pop3", "plogin")


def test_unknown_proxy_mech_is_a_temporary_failure(setup: Setup) -> None:
    assert_same_refusal(setup, "badmech")
    setup.cote.wait_for_log("proxy(badmech): Unsupported SASL mechanism foo")


# -- proxy_nopipelining ------------------------------------------------------------------------
def _sent_after_answer(conn: Connection, command: bytes, answer: bytes, count: int = 1
                       ) -> bool:
    """True when the chunk carrying ``command`` went out after ``count`` ``answer``s came."""
    answers = 0
    for direction, chunk in conn.chunks:
        if direction == "<":
            answers += chunk.count(answer)
        if direction == ">" and command in chunk:
            return answers >= count
    raise AssertionError(f"{command!r} never sent: {conn.chunks}")


def test_imap_nopipelining_waits_for_the_id_answer(setup: Setup) -> None:
    theirs, ours = both(setup, "imap", "nopipe")
    assert _sent_after_answer(theirs, b"L LOGIN", b"I OK")
    assert _sent_after_answer(ours, b"L LOGIN", b"I OK")
    # Pipelined (the default): ID and LOGIN leave together.
    _, ours = both(setup, "imap", "piped")
    assert not _sent_after_answer(ours, b"L LOGIN", b"I OK")
    assert next(c for d, c in ours.chunks if d == ">").count(b"\r\n") == 2


def test_pop3_user_waits_for_its_answer_and_nopipelining_for_xclient(setup: Setup) -> None:
    # PASS always waits for USER's +OK (Dovecot does the same without the field).
    theirs, ours = both(setup, "pop3", "ppiped")
    for conn in (theirs, ours):
        sent = conn.to_backend()
        assert sent[0].startswith(b"XCLIENT ") and sent[1:3] == [b"USER ppiped", b"PASS secret"]
        # After the banner's, XCLIENT's and USER's +OK.
        assert _sent_after_answer(conn, b"PASS ", b"+OK", 3)
    # XCLIENT and USER go together, unless proxy_nopipelining (a cote extension for POP3).
    assert not _sent_after_answer(ours, b"USER ", b"+OK", 2)
    _, ours = both(setup, "pop3", "pnopipe")
    assert _sent_after_answer(ours, b"USER ", b"+OK", 2)
    assert backend_login_line(setup.backend.log_path, "pop3", "pnopipe")


# -- proxy_noauth ------------------------------------------------------------------------------
def test_proxy_noauth_is_ignored_for_imap_as_in_dovecot(setup: Setup) -> None:
    # Dovecot 2.3 uses proxy_noauth only for submission: IMAP/POP3 proxies still log in.
    theirs, ours = both(setup, "imap", "noauth")
    assert login_lines(ours) == login_lines(theirs) == [b'L LOGIN "noauth" "secret"']
    assert "method=PLAIN" in backend_login_line(setup.backend.log_path, "imap", "noauth")


# -- proxy_refresh -----------------------------------------------------------------------------
def _read_fifo(path: str, seconds: float, got: list[bytes]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                data = b""
            if data:
                got.append(data)
            time.sleep(0.05)
    finally:
        os.close(fd)


@pytest.mark.parametrize("proxy", ["dovecot", "cote"])
def test_proxy_refresh_names_the_user_on_the_notify_fifo(setup: Setup, proxy: str) -> None:
    server = setup.dovecot if proxy == "dovecot" else setup.cote
    fifo = os.path.join(server.base_dir, "login", "proxy-notify")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
        os.chmod(fifo, 0o666)
    got: list[bytes] = []
    reader = threading.Thread(target=_read_fifo, args=(fifo, 4.5, got))
    reader.start()
    conn = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    conn.login("refresh", "secret")
    time.sleep(2.6)
    conn.logout()
    reader.join()
    lines = b"".join(got).splitlines()
    # The destination user, once a second while proxied (2 or 3 in 2.6 s), none after.
    assert set(lines) == {b"piped"} and 2 <= len(lines) <= 3, lines


# -- proxy_always ------------------------------------------------------------------------------
def test_proxy_maybe_always_to_ourselves_has_no_host(setup: Setup) -> None:
    assert_same_refusal(setup, "always")
    setup.cote.wait_for_log("proxy(always): host not given")
