"""A burst of clients that log in and log out at once, through imap-login and pop3-login.

The mail process answers the login itself, so a fast client's next command can reach the
socket before the login process has heard back from the hand-off: that command belongs to the
mail process and must not be read (and lost) by the login process. The benchmark found this
(clients hanging after LOGIN); here every session must end with its LOGOUT/QUIT answered.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir

USERS = {f"burst{i}": f"pw{i}" for i in range(10)}


@pytest.fixture(scope="module")
def cote() -> Iterator[CoteServer]:
    users = DovecotOracle(users=USERS)
    users.write_config()
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="imap pop3", tls=True)
    try:
        yield server.start()
    finally:
        server.cleanup()
        remove_dir(users.dir)


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a hang raises the socket's timeout)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def imap_session(port: int, user: str, tls: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as plain, \
            (tls.wrap_socket(plain) if tls else plain) as s:
        read_until(s, b"\r\n")
        s.sendall(f"a LOGIN {user} {USERS[user]}\r\n".encode())
        assert b"a OK " in read_until(s, b"Logged in\r\n")
        s.sendall(b"b LOGOUT\r\n")  # at once, as a scripted client does
        return read_all(s)


def pop3_session(port: int, user: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        read_until(s, b"\r\n")
        s.sendall(f"USER {user}\r\n".encode())
        read_until(s, b"\r\n")
        s.sendall(f"PASS {USERS[user]}\r\n".encode())
        assert read_until(s, b"\r\n").startswith(b"+OK")
        s.sendall(b"QUIT\r\n")
        return read_all(s)


@pytest.mark.parametrize("protocol", ["imap", "imaps", "pop3"])
def test_a_burst_of_quick_sessions_all_end_cleanly(cote: CoteServer, protocol: str) -> None:
    port = cote.ports[protocol]
    tls = None
    if protocol == "imaps":  # the login process stays as the TLS relay
        tls = ssl.create_default_context(cafile=str(cote.cert))
        tls.check_hostname = False

    def session(user: str) -> bytes:
        if protocol == "pop3":
            return pop3_session(port, user)
        return imap_session(port, user, tls)

    with ThreadPoolExecutor(len(USERS)) as pool:
        for _ in range(4):
            endings = list(pool.map(session, USERS))
            for ending in endings:
                if protocol != "pop3":
                    assert ending.startswith(b"* BYE Logging out\r\nb OK Logout"), ending
                else:
                    assert ending.startswith(b"+OK Logging out"), ending
