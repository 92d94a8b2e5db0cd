"""A mail process tells anvil about the session it serves, as Dovecot's imap and pop3 do.

Login processes count ``<service>/<ip>/<user>`` sessions through anvil to enforce
``mail_max_userip_connections``; the session is counted where it lives, the mail process.
The registration is one ``CONNECT`` line on the process's own anvil connection (made by the
master at fork); anvil forgets it on ``DISCONNECT`` or when that connection closes, so a
process that dies cannot leave a count behind.
"""

from __future__ import annotations

import os
import socket

from cote.login.anvilclient import ident


class SessionRegistration:
    """One session's entry in anvil; ``close()`` withdraws it (idempotent)."""

    def __init__(self, sock: socket.socket | None, service: str, remote_ip: str,
                 user: str) -> None:
        self.sock = sock
        self.line = f"\t{os.getpid()}\t{ident(service, remote_ip, user)}\n"
        self.registered = self._send("CONNECT")

    def _send(self, command: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendall((command + self.line).encode())
        except OSError:
            self.sock = None
            return False
        return True

    def close(self) -> None:
        if self.registered:
            self.registered = False
            self._send("DISCONNECT")


def register_session(sock: socket.socket | None, service: str, remote_ip: str,
                     user: str) -> SessionRegistration:
    """Register a session when the client's IP is known (hand-offs from a UNIX socket
    without one are not counted, as Dovecot does not count them either)."""
    return SessionRegistration(sock if remote_ip else None, service, remote_ip, user)
