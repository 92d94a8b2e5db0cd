"""The two login process modes: cote's default high-performance mode (one login process per
CPU serving every client) and Dovecot's high-security mode (``service_count = 1``: a process
per client, gone when its client has logged in)."""

from __future__ import annotations

import imaplib
import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

CLIENTS = 5


def start(store: DovecotOracle, login_conf: str) -> CoteServer:
    return CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                      passwd_file=store.dir / "users", protocols="imap", extra_conf=f"""
disable_plaintext_auth = no
auth_failure_delay = 0
{login_conf}
""").start()


@pytest.fixture(scope="module")
def servers(store: DovecotOracle) -> Iterator[dict[str, CoteServer]]:
    """Both modes side by side: the default one and ``service_count = 1``."""
    started: dict[str, CoteServer] = {}
    try:
        started["default"] = start(store, "")
        started["high-security"] = start(store, "service imap-login {\n  service_count = 1\n}\n")
        yield started
    finally:
        for server in started.values():
            server.cleanup()


@pytest.fixture(scope="module")
def default_mode(servers: dict[str, CoteServer]) -> CoteServer:
    return servers["default"]


@pytest.fixture(scope="module")
def high_security(servers: dict[str, CoteServer]) -> CoteServer:
    return servers["high-security"]


def login_pids(cote: CoteServer) -> set[int]:
    """The master's imap-login children."""
    assert cote.process is not None
    out = subprocess.run(["pgrep", "-P", str(cote.process.pid), "-f", "cote/imap-login"],
                         capture_output=True, text=True, check=False)
    return {int(pid) for pid in out.stdout.split()}


def greeted_clients(cote: CoteServer, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", cote.ports["imap"]), timeout=20)
        assert s.recv(4096).startswith(b"* OK ")
        clients.append(s)
    return clients


def settle(cote: CoteServer, want: int) -> set[int]:
    """The login processes once the master has made up its spares (it forks asynchronously)."""
    deadline = time.monotonic() + 10
    pids = login_pids(cote)
    while len(pids) < want and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = login_pids(cote)
    return pids


def logs_in(cote: CoteServer) -> bool:
    with imaplib.IMAP4("127.0.0.1", cote.ports["imap"], timeout=20) as imap:
        imap.login("u1", "p1")
        ok, data = imap.select("INBOX")
        imap.logout()
    return ok == "OK" and data[0] is not None


def test_default_mode_serves_every_client_from_one_process_per_cpu(
        default_mode: CoteServer) -> None:
    before = settle(default_mode, os.cpu_count() or 1)
    assert len(before) == (os.cpu_count() or 1)
    clients = greeted_clients(default_mode, CLIENTS)
    try:
        assert login_pids(default_mode) == before  # no process forked for them
        assert logs_in(default_mode)
        assert login_pids(default_mode) == before  # and none gone after a login
    finally:
        for s in clients:
            s.close()


def test_service_count_1_gives_each_client_its_own_process(high_security: CoteServer) -> None:
    clients = greeted_clients(high_security, CLIENTS)
    try:
        serving = settle(high_security, CLIENTS)
        assert len(serving) >= CLIENTS  # one per client (plus the spares kept ready)
        assert logs_in(high_security)
    finally:
        for s in clients:
            s.close()
    # A client's process ends with its client: those that served them are gone, spares stay.
    deadline = time.monotonic() + 10
    while len(serving - login_pids(high_security)) < CLIENTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(serving - login_pids(high_security)) >= CLIENTS
