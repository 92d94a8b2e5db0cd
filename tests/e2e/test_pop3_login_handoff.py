"""POP3 through cote's own processes: master → pop3-login → auth → hand-off → pop3 → Maildir.

Everything on cote's side is cote: the master's listeners and supervision, the pre-auth
dialogue, cote's auth daemon (passwd-file), the fd hand-off, the REQUEST that confirms the
login, the privilege drop and the POP3 session. A real Dovecot owns the store (it wrote the
messages) and serves the same commands as the reference.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

MESSAGES = [b"Subject: hello\r\n\r\nbody\r\n", b"Subject: second\nX: y\n\n.dot\nend"]


@dataclass
class Setup:
    dovecot: DovecotOracle
    cote: CoteServer
    port: int
    log: Path


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    dc = DovecotOracle(users={"popuser": "secret"}).start()
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login("popuser", "secret")
    for msg in MESSAGES:
        imap.append("INBOX", "", None, msg)
    imap.logout()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="pop3", extra_conf="auth_verbose = yes\n")
    try:
        cote.start()
        yield Setup(dc, cote, cote.ports["pop3"], cote.log_path)
    finally:
        cote.cleanup()
        dc.cleanup()


def log_lines(setup: Setup, needle: str, path: Path | None = None) -> list[str]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in (path or setup.log).read_text().splitlines() if needle in x]
        if lines:
            return lines
        time.sleep(0.05)
    return []


def test_login_hands_the_client_to_a_pop3_process_that_serves_dovecots_store(setup: Setup) -> None:
    theirs = poplib.POP3("127.0.0.1", setup.dovecot.ports["pop3"], timeout=10)
    theirs.user("popuser")
    theirs.pass_("secret")
    ours = poplib.POP3("127.0.0.1", setup.port, timeout=10)
    assert ours.getwelcome() == b"+OK Dovecot (Debian) ready."
    assert ours.user("popuser") == b"+OK"
    assert ours.pass_("secret") == b"+OK Logged in."
    assert ours.stat() == theirs.stat()
    assert ours.uidl() == theirs.uidl()
    for i in range(1, len(MESSAGES) + 1):
        assert ours.retr(i) == theirs.retr(i)
    assert ours.quit() == b"+OK Logging out."
    theirs.quit()
    [login] = log_lines(setup, "pop3-login: Info: Login: user=<popuser>")
    assert re.search(r"pop3-login: Info: Login: user=<popuser>, method=PLAIN, rip=127\.0\.0\.1, "
                     r"lip=127\.0\.0\.1, mpid=\d+, secured, session=<[A-Za-z0-9+/]{16}>$", login)
    mpid = re.search(r"mpid=(\d+)", login).group(1)  # type: ignore[union-attr]
    ours_logout = log_lines(setup, f"pop3(popuser)<{mpid}>")
    # Dovecot served the very same commands: its logout line is the reference.
    theirs_logout = log_lines(setup, "Disconnected: Logged out top=", setup.dovecot.log_path)
    assert ours_logout and theirs_logout
    assert ours_logout[-1].split(": Info: ", 1)[1] == theirs_logout[-1].split(": Info: ", 1)[1]


def test_pipelined_commands_after_pass_reach_the_mail_process(setup: Setup) -> None:
    sock = socket.create_connection(("127.0.0.1", setup.port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    sock.sendall(b"USER popuser\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
    replies = [f.readline() for _ in range(4)]
    f.close()
    sock.close()
    assert replies == [b"+OK\r\n", b"+OK Logged in.\r\n", b"+OK 2 58\r\n", b"+OK Logging out.\r\n"]


def test_wrong_password_is_refused_and_logged_like_dovecot(setup: Setup) -> None:
    sock = socket.create_connection(("127.0.0.1", setup.port), timeout=15)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"USER popuser\r\nPASS wrong\r\n")
    assert f.readline() == b"+OK\r\n"
    assert f.readline() == b"-ERR [AUTH] Authentication failed.\r\n"
    sock.sendall(b"QUIT\r\n")
    assert f.readline() == b"+OK Logging out\r\n"
    f.close()
    sock.close()
    lines = log_lines(setup, "Aborted login by logging out (auth failed, 1 attempts")
    assert lines and re.search(r"pop3-login: Info: Disconnected: Aborted login by logging out "
                               r"\(auth failed, 1 attempts in \d+ secs\): user=<popuser>, "
                               r"method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, secured, "
                               r"session=<[A-Za-z0-9+/]{16}>$", lines[-1]), lines
