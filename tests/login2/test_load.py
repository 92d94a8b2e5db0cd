"""Load proofs for one imap-login process: 2,000 clients at once, and a slowloris client that
does not hold anybody up. Assertions are about completion and order, never about timing."""

from __future__ import annotations

import asyncio
import imaplib
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

CLIENTS = 2000
GREETING = b"* OK [CAPABILITY "


@pytest.fixture(scope="module")
def cote(store: DovecotOracle) -> Iterator[CoteServer]:
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap", extra_conf="""
disable_plaintext_auth = no
auth_failure_delay = 0
service imap-login {
  service_count = 0
  process_limit = 1
  client_limit = 2100
}
""")
    try:
        yield server.start()
    finally:
        server.cleanup()


def login_pids(cote: CoteServer) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "cote/imap-login"], capture_output=True, text=True)
    mine = []
    for pid in out.stdout.split():
        try:
            with open(f"/proc/{pid}/status") as f:
                ppid = next(int(x.split()[1]) for x in f if x.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        assert cote.process is not None
        if ppid == cote.process.pid:
            mine.append(int(pid))
    return mine


async def open_clients(port: int, count: int) -> list[tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]]:
    clients = []
    for start in range(0, count, 250):  # in waves, so the listen backlog never overflows
        batch = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(start, min(start + 250, count))))
        for reader, _ in batch:
            line = await asyncio.wait_for(reader.readline(), 60)
            assert line.startswith(GREETING)
        clients += batch
    return clients


def test_two_thousand_concurrent_preauth_clients_on_one_process(cote: CoteServer) -> None:
    async def run() -> None:
        clients = await open_clients(cote.ports["imap"], CLIENTS)
        assert len(login_pids(cote)) == 1  # every one of them is served by one process
        for i, (_, writer) in enumerate(clients):
            writer.write(f"t{i} NOOP\r\n".encode())
        answers = await asyncio.gather(*(asyncio.wait_for(reader.readline(), 60)
                                         for reader, _ in clients))
        assert answers == [f"t{i} OK NOOP completed.\r\n".encode() for i in range(CLIENTS)]
        # With all of them still connected, a real login goes through.
        reader, writer = await asyncio.open_connection("127.0.0.1", cote.ports["imap"])
        assert (await reader.readline()).startswith(GREETING)
        writer.write(b"a LOGIN u1 p1\r\n")
        assert b"a OK " in await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        for _, w in clients:
            w.close()
    asyncio.run(run())
    assert len(login_pids(cote)) == 1


def test_slowloris_does_not_slow_the_others(cote: CoteServer) -> None:
    slow = socket.create_connection(("127.0.0.1", cote.ports["imap"]), timeout=10)
    assert slow.recv(4096).startswith(GREETING)
    command = b"s LOGIN u1 p1\r\n"
    sent = 0
    finished = 0
    for _ in range(5):
        slow.sendall(command[sent:sent + 1])  # one byte per round
        sent += 1
        # Whole sessions of others complete while the slow command is still unfinished.
        for _ in range(4):
            client = imaplib.IMAP4("127.0.0.1", cote.ports["imap"], timeout=10)
            assert client.login("u2", "p2")[0] == "OK"
            client.logout()
            finished += 1
    assert finished == 20 and sent < len(command)
    slow.settimeout(0.2)
    with pytest.raises(TimeoutError):
        slow.recv(4096)  # nothing answered for the half-sent line: it is simply waiting
    slow.sendall(command[sent:])
    slow.settimeout(10)
    assert slow.recv(4096).startswith(b"s OK ")
    slow.close()
