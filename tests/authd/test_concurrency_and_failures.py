"""The auth daemon under many concurrent requests, and with a backend that cannot answer."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

USERS = {f"user{i}": f"pw{i}" for i in range(10)}
CONNECTIONS = 20
PER_CONNECTION = 50


@pytest.fixture(scope="module")
def cote() -> Iterator[CoteServer]:
    users = DovecotOracle(users=USERS)
    users.write_config()  # its passwd-file only
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="lmtp",
                        extra_conf="auth_failure_delay = 1 secs\n"
                                   "service auth {\n  idle_kill = 1 secs\n}\n")
    try:
        yield server.start()
    finally:
        server.cleanup()
        users.cleanup()


def handshake(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    sock.sendall(b"VERSION\t1\t2\nCPID\t99\n")
    buf = b""
    while b"DONE\n" not in buf:
        buf += sock.recv(65536)
    return sock


def auth_line(request_id: int, user: str, password: str) -> bytes:
    resp = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"AUTH\t{request_id}\tPLAIN\tservice=smtp\tsecured\tresp={resp}\n".encode()


def test_a_thousand_concurrent_requests_all_get_the_right_answer(cote: CoteServer) -> None:
    path = str(cote.socket_path("auth-client"))
    socks = [handshake(path) for _ in range(CONNECTIONS)]
    expected: list[dict[int, str]] = []
    for conn, sock in enumerate(socks):
        wanted = {}
        lines = []
        for n in range(1, PER_CONNECTION + 1):
            user = f"user{(conn + n) % 10}"
            good = (conn * n) % 7 != 0  # some wrong passwords, answered after the delay
            lines.append(auth_line(n, user, USERS[user] if good else "wrong"))
            wanted[n] = f"OK\t{n}\tuser={user}" if good else f"FAIL\t{n}\tuser={user}"
        sock.sendall(b"".join(lines))
        expected.append(wanted)
    for sock, wanted in zip(socks, expected, strict=True):
        got: dict[int, str] = {}
        buf = b""
        while len(got) < len(wanted):
            data = sock.recv(65536)
            assert data, "connection closed before every request was answered"
            buf += data
            *lines, rest = buf.split(b"\n")
            buf = rest
            for line in lines:
                text = line.decode()
                request_id = int(text.split("\t")[1])
                assert request_id not in got, f"two answers for request {request_id}"
                got[request_id] = text
        assert got == wanted
        sock.close()


def test_unreadable_passdb_fails_as_temp_fail_quickly_and_the_daemon_survives() -> None:
    users = DovecotOracle(users=USERS)
    users.write_config()
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "no-such-file", protocols="lmtp")
    try:
        server.start()
        path = str(server.socket_path("auth-client"))
        for attempt in range(3):
            sock = handshake(path)
            start = time.monotonic()
            sock.sendall(auth_line(1, "user1", "pw1"))
            reply = sock.recv(65536).decode()
            assert reply == "FAIL\t1\tuser=user1\tcode=temp_fail\n", attempt  # Dovecot's order
            assert time.monotonic() - start < 1.0
            sock.close()
        lines = server.wait_for_log("no-such-file")
        assert lines and lines[0].endswith(
            f"auth: Error: passwd-file(user1): open({users.dir}/no-such-file) failed: "
            f"No such file or directory"), server.log_text()[-2000:]
    finally:
        server.cleanup()
        users.cleanup()


def test_idle_kill_spares_an_auth_process_with_clients(cote: CoteServer) -> None:
    """The master idle-kills processes that report no clients: the auth process counts its
    connections, so a client that waits longer than idle_kill still gets its answer."""
    sock = handshake(str(cote.socket_path("auth-client")))
    time.sleep(3)  # idle_kill = 1 secs
    sock.sendall(auth_line(1, "user1", "pw1"))
    assert sock.recv(65536) == b"OK\t1\tuser=user1\n"
    sock.close()
