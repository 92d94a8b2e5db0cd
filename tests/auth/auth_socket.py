"""Blocking test clients for Dovecot's (or cote's) auth-client and auth-master UNIX sockets.

They drive cote's own client-side codecs over a real socket, so a test that passes against
Dovecot proves the codec speaks the real protocol.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from cote.auth.protocol import auth_client as ac
from cote.auth.protocol import auth_master as am

# Called with the server's challenge; returns the next client response.
ClientStep = Callable[[bytes], bytes]


class AuthClientBase:
    """One login-process-like auth-client connection: AUTH conversations over ``send``."""

    codec: ac.ClientConnection
    pending: list[ac.ClientEvent]
    handshake: ac.ServerHandshake

    def __init__(self) -> None:
        self.codec = ac.ClientConnection()
        self.pending = []
        self._next_id = 1
        self.send(ac.ClientConnection.hello(os.getpid()))
        event = self.next_event()
        assert isinstance(event, ac.ServerHandshake), event
        self.handshake = event

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def next_event(self) -> ac.ClientEvent:
        raise NotImplementedError

    def conversation(self, mechanism: str, initial: bytes | None, step: ClientStep | None,
                     *, service: str = "imap", params: dict[str, str] | None = None,
                     flags: tuple[str, ...] = ("secured",)) -> tuple[ac.ClientEvent, list[bytes]]:
        """Run one AUTH to its end; returns the final event and the challenges seen."""
        request_id = self._next_id
        self._next_id += 1
        self.send(ac.ClientConnection.auth(request_id, mechanism, service=service,
                                           params=params, flags=(*flags, "no-penalty"),
                                           initial_response=initial))
        challenges: list[bytes] = []
        while True:
            event = self.next_event()
            if isinstance(event, ac.Continue):
                challenges.append(event.challenge)
                if step is None or len(challenges) > 10:
                    self.send(ac.ClientConnection.cancel(request_id))
                    return event, challenges
                self.send(ac.ClientConnection.cont(request_id, step(event.challenge)))
                continue
            return event, challenges


class AuthClientSocket(AuthClientBase):
    """An auth-client connection over a real UNIX socket (Dovecot's or cote's)."""

    def __init__(self, path: Path | str, *, timeout: float = 15.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        super().__init__()

    def next_event(self) -> ac.ClientEvent:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return ac.Disconnect("EOF")
            self.pending += self.codec.feed(data)
        return self.pending.pop(0)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class AuthMasterSocket:
    """A mail-process-like client of auth-master / auth-userdb."""

    def __init__(self, path: Path | str, *, timeout: float = 15.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.codec = am.ClientConnection()
        self.pending: list[am.ClientEvent] = []
        self.sock.sendall(am.ClientConnection.hello())
        event = self.next_event()
        assert isinstance(event, am.ServerHello), event
        self.hello = event

    def next_event(self) -> am.ClientEvent:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return am.Disconnect("EOF")
            self.pending += self.codec.feed(data)
        return self.pending.pop(0)

    def ask(self, data: bytes) -> am.ClientEvent:
        self.sock.sendall(data)
        return self.next_event()

    def close(self) -> None:
        self.sock.close()


def wait_for_socket(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)
