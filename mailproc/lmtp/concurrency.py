"""``lmtp_user_concurrency_limit``: deliveries in progress per user, counted by anvil.

As Dovecot's LMTP: at RCPT the process asks anvil ``LOOKUP lmtp/<user>``; at or over the limit
the recipient gets ``451 4.3.0 <rcpt> Too many concurrent deliveries for user``, otherwise the
process registers ``CONNECT <pid> lmtp/<user>`` until the transaction ends. The registration
lives on this process's own anvil connection (made by the master at fork), so a process that
dies cannot leave a count behind. Without anvil the limit is not enforced (Dovecot: a failed
lookup counts as zero).
"""

from __future__ import annotations

import os
import socket

from cote.login.anvilclient import ident

TIMEOUT = 5.0


def user_ident(service: str, user: str) -> str:
    """``lmtp/<user>`` (the user tab-escaped as in every anvil ident)."""
    return f"{service}/{ident('', '', user)[2:]}"


class DeliveryCounter:
    """This process's per-user delivery registrations with anvil (one request at a time: the
    lmtp process handles its clients on one thread)."""

    def __init__(self, sock: socket.socket | None, limit: int, service: str = "lmtp") -> None:
        self.sock = sock if limit > 0 else None
        self.limit = limit
        self.service = service
        self.buffer = b""

    def _send(self, line: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
        except OSError:
            self.sock = None
            return False
        return True

    def _count(self, key: str) -> int:
        if not self._send(f"LOOKUP\t{key}"):
            return 0
        assert self.sock is not None
        try:
            self.sock.settimeout(TIMEOUT)
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise OSError("anvil closed the connection")
                self.buffer += chunk
        except OSError:
            self.sock = None
            return 0
        line, _, self.buffer = self.buffer.partition(b"\n")
        return int(line) if line.strip().isdigit() else 0

    def try_begin(self, user: str) -> bool:
        """False when ``user`` already has ``limit`` deliveries in progress; else counts one
        more (ended by :meth:`end`)."""
        if self.limit <= 0:
            return True
        key = user_ident(self.service, user)
        if self._count(key) >= self.limit:
            return False
        self._send(f"CONNECT\t{os.getpid()}\t{key}")
        return True

    def end(self, user: str) -> None:
        if self.limit > 0:
            self._send(f"DISCONNECT\t{os.getpid()}\t{user_ident(self.service, user)}")
