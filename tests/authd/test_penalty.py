"""Auth-failure penalties per remote IP, through anvil."""

from __future__ import annotations

import base64
import select
import socket
from collections.abc import Iterator

import pytest

from cote.auth.penalty import penalty_ident, penalty_secs
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


def test_delay_curve_is_dovecots() -> None:
    assert [penalty_secs(p) for p in range(7)] == [0, 2, 4, 8, 15, 15, 15]


def test_ipv6_addresses_are_grouped_by_48() -> None:
    assert penalty_ident("2001:db8:1:2::5") == penalty_ident("2001:db8:1:ffff::9") == "2001:db8:1::"
    assert penalty_ident("2001:db8:2::1") != penalty_ident("2001:db8:1::1")
    assert penalty_ident("::ffff:192.0.2.7") == "192.0.2.7"
    assert penalty_ident("not an ip") is None


@pytest.fixture(scope="module")
def cote() -> Iterator[CoteServer]:
    users = DovecotOracle(users={"u": "right"})
    users.write_config()
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="lmtp",
                        extra_conf="auth_failure_delay = 0\n")
    try:
        yield server.start()
    finally:
        server.cleanup()
        users.cleanup()


def connect(cote: CoteServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(cote.socket_path("auth-client")))
    sock.sendall(b"VERSION\t1\t2\nCPID\t7\n")
    buf = b""
    while b"DONE\n" not in buf:
        buf += sock.recv(65536)
    return sock


def auth(sock: socket.socket, rip: str, password: str, *flags: str) -> None:
    resp = base64.b64encode(f"\0u\0{password}".encode()).decode()
    extra = "".join(f"\t{f}" for f in flags)
    sock.sendall(f"AUTH\t1\tPLAIN\tservice=imap\tlip=127.0.0.1\trip={rip}{extra}"
                 f"\tresp={resp}\n".encode())


def answer(sock: socket.socket) -> str:
    return sock.recv(65536).decode().split("\t", 1)[0]


def first_to_answer(socks: dict[str, socket.socket]) -> str:
    ready, _, _ = select.select(list(socks.values()), [], [], 60)
    return next(name for name, s in socks.items() if s in ready)


def test_a_failing_ip_is_slowed_while_another_logs_in_at_once(cote: CoteServer) -> None:
    for password in ("wrong1", "wrong2"):
        s = connect(cote)
        auth(s, "192.0.2.1", password)
        assert answer(s) == "FAIL"
        s.close()
    attacker, other = connect(cote), connect(cote)
    auth(attacker, "192.0.2.1", "right")  # penalty 2: waits ~4 s even with the right password
    auth(other, "198.51.100.2", "right")  # sent later, answered first
    assert first_to_answer({"attacker": attacker, "other": other}) == "other"
    assert answer(other) == "OK"
    assert answer(attacker) == "OK"
    # The success cleared the penalty: the same IP is now answered before a penalised one.
    s = connect(cote)
    auth(s, "203.0.113.9", "wrong")
    assert answer(s) == "FAIL"
    again, penalised = connect(cote), connect(cote)
    auth(penalised, "203.0.113.9", "right")
    auth(again, "192.0.2.1", "right")
    assert first_to_answer({"again": again, "penalised": penalised}) == "again"


def test_no_penalty_flag_is_never_delayed(cote: CoteServer) -> None:
    for password in ("bad1", "bad2", "bad3"):
        s = connect(cote)
        auth(s, "192.0.2.50", password)
        assert answer(s) == "FAIL"
        s.close()
    trusted, penalised = connect(cote), connect(cote)
    auth(penalised, "192.0.2.50", "right")
    auth(trusted, "192.0.2.50", "right", "no-penalty")
    assert first_to_answer({"trusted": trusted, "penalised": penalised}) == "trusted"
