"""The login process's client sockets have TCP_NODELAY (asyncio leaves it off on accepted
sockets): without it a small write after an unacknowledged one — the greeting after TLS 1.3's
session tickets, relayed replies — waits for the client's delayed ACK.

The option is read from the server's own socket: found through /proc/net/tcp (its inode) and
the login process's fd table, and duplicated with pidfd_getfd (the tests run as root)."""

from __future__ import annotations

import ctypes
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cote import CoteServer

SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 alike (a common syscall number since Linux 5.6)


@pytest.fixture(scope="module")
def cote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoteServer]:
    passwd = tmp_path_factory.mktemp("nodelay") / "users"
    passwd.write_text("")
    server = CoteServer(mail_location="maildir:/nonexistent/%u", passwd_file=passwd,
                        protocols="imap", tls=True)
    try:
        yield server.start()
    finally:
        server.cleanup()


def server_socket_inode(client: socket.socket) -> int:
    """The inode of the server's end of ``client``'s TCP connection."""
    local_port = client.getsockname()[1]
    server_port = client.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and \
                int(remote.split(":")[1], 16) == local_port:
            return int(fields[9])
    raise AssertionError("server end not found in /proc/net/tcp")


def duplicate_from_owner(inode: int) -> socket.socket:
    """A duplicate of the descriptor some process holds for socket ``inode``."""
    libc = ctypes.CDLL(None, use_errno=True)
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                    continue
            except OSError:
                continue
            pidfd = os.pidfd_open(int(pid))
            try:
                dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            finally:
                os.close(pidfd)
            if dup < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
            return socket.socket(fileno=dup)
    raise AssertionError(f"no process holds {target}")


@pytest.mark.parametrize("listener", ["imap", "imaps"])
def test_client_socket_has_nodelay(cote: CoteServer, listener: str) -> None:
    raw = socket.create_connection(("127.0.0.1", cote.ports[listener]), timeout=10)
    if listener == "imaps":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client: socket.socket = context.wrap_socket(raw)
    else:
        client = raw
    with client:
        assert client.recv(4096).startswith(b"* OK")
        with duplicate_from_owner(server_socket_inode(client)) as server_end:
            assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
