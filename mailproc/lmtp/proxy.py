"""``lmtp_proxy = yes``: recipients whose passdb entry says ``proxy`` go to another LMTP server.

As Dovecot 2.3's LMTP proxy: at RCPT the process asks the auth daemon's passdb (a PASS lookup on
auth-userdb, no password); a reply with ``proxy`` and ``host`` (``port``, default 24;
``destuser``) names the backend, anything else (no ``proxy`` field, NOTFOUND) means a local
delivery. One backend connection per transaction and backend: ``LHLO <hostname>``, the
client's ``MAIL FROM``, then each recipient's ``RCPT TO``, whose reply is relayed to the client
as is. After the data the backend gets the message with this server's ``Received`` header in
front, and each recipient's reply is ours (``250 2.0.0 <rcpt> <our id> Saved``) when the
backend accepted it, else the backend's own failure.

The client is blocking, like the rest of the lmtp process (one client at a time).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from cote.auth.protocol.auth_master import (
    ClientConnection,
    Disconnect,
    Failure,
    NotFound,
    PassReply,
)
from cote.mailproc.userdb import UserdbError

DEFAULT_PORT = 24
TIMEOUT = 125.0  # Dovecot's default proxy_timeout for LMTP
CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Backend:
    host: str
    port: int
    timeout: float

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    backend: Backend
    rcpt: str  # the address given to the backend (destuser, or the client's)


def pass_lookup(path: str, user: str, params: Mapping[str, str]) -> Mapping[str, str] | None:
    """The passdb extra fields of ``user`` (None: not in the passdb). Raises UserdbError."""
    codec = ClientConnection()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(ClientConnection.hello() + ClientConnection.passdb(1, user, params))
        while True:
            data = sock.recv(65536)
            if not data:
                raise UserdbError("auth-userdb closed the connection")
            for event in codec.feed(data):
                if isinstance(event, Disconnect):
                    raise UserdbError(event.reason)
                if isinstance(event, NotFound):
                    return None
                if isinstance(event, Failure):
                    raise UserdbError(event.reason or "passdb lookup failed")
                if isinstance(event, PassReply):
                    return dict(event.fields)
    except OSError as e:
        raise UserdbError(f"auth-userdb: {e}") from e
    finally:
        sock.close()


def proxy_target(fields: Mapping[str, str], address: str,
                 local: tuple[str, int] | None) -> ProxyTarget | None:
    """Where the passdb sends this recipient (None: deliver locally). A backend that is this
    very listener is local too, so a misconfigured entry cannot loop."""
    if "proxy" not in fields or not fields.get("host"):
        return None
    port_text = fields.get("port", "")
    port = int(port_text) if port_text.isdigit() else DEFAULT_PORT
    if local is not None and (fields["host"], port) == local:
        return None
    timeout_text = fields.get("proxy_timeout", "")
    timeout = float(timeout_text) if timeout_text.isdigit() and int(timeout_text) else TIMEOUT
    rcpt = fields.get("destuser") or address
    return ProxyTarget(Backend(fields["host"], port, timeout), rcpt)


class BackendError(Exception):
    """The backend could not be reached or broke the dialogue; the text is the reason."""


class BackendSession:
    """One LMTP transaction with a backend (RFC 2033 client side)."""

    def __init__(self, backend: Backend, hostname: str) -> None:
        self.backend = backend
        self.hostname = hostname
        self.sock: socket.socket | None = None
        self.buf = b""
        self.accepted: list[str] = []  # RCPTs the backend took, in order

    def _line(self) -> bytes:
        assert self.sock is not None
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(CHUNK)
            except OSError as e:
                raise BackendError(f"read failed: {e}") from e
            if not data:
                raise BackendError("Remote server closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def _reply(self) -> bytes:
        """One (possibly multi-line) reply, CRLF line ends."""
        lines = []
        while True:
            line = self._line()
            lines.append(line.rstrip(b"\r\n") + b"\r\n")
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise BackendError(f"write failed: {e}") from e

    def _command(self, line: str) -> bytes:
        self._send(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return self._reply()

    def start(self, mail_from: str) -> None:
        """Connect, LHLO and MAIL FROM (``mail_from`` is the client's argument as sent)."""
        try:
            self.sock = socket.create_connection((self.backend.host, self.backend.port),
                                                 timeout=self.backend.timeout)
        except OSError as e:
            raise BackendError(f"connect({self.backend}) failed: {e}") from e
        for reply in (self._reply(), self._command(f"LHLO {self.hostname}"),
                      self._command(f"MAIL {mail_from}")):
            if not reply.startswith(b"2"):
                raise BackendError(f"Remote server answered: {last_line(reply)}")

    def rcpt(self, target: ProxyTarget, params: str) -> bytes:
        reply = self._command(f"RCPT TO:<{target.rcpt}>{params}")
        if reply.startswith(b"2"):
            self.accepted.append(target.rcpt)
        return reply

    def data(self, head: bytes, body: IO[bytes]) -> list[bytes]:
        """Send the message (``head`` then the LF-ended ``body``, as CRLF and dot-stuffed);
        one reply per accepted recipient."""
        reply = self._command("DATA")
        if not reply.startswith(b"3"):
            return [reply] * len(self.accepted)
        self._send(_smtp_lines(head))
        body.seek(0)
        at_line_start = True
        tail = b"\n"
        while chunk := body.read(CHUNK):
            self._send(_smtp_chunk(chunk, at_line_start))
            at_line_start = chunk.endswith(b"\n")
            tail = chunk[-1:]
        self._send((b"" if tail == b"\n" else b"\r\n") + b".\r\n")
        return [self._reply() for _ in self.accepted]

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self.sock.settimeout(2)
            self._command("QUIT")
        except (BackendError, OSError):
            pass
        self.sock.close()
        self.sock = None


def _smtp_chunk(data: bytes, at_line_start: bool) -> bytes:
    """LF → CRLF and dot-stuffing of a piece of the stored message."""
    out = data.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
    return b"." + out if at_line_start and out.startswith(b".") else out


def _smtp_lines(head: bytes) -> bytes:
    return _smtp_chunk(head, True)


def last_line(reply: bytes) -> str:
    lines = reply.rstrip(b"\r\n").split(b"\r\n")
    return lines[-1].decode("utf-8", "replace")


__all__ = ["Backend", "BackendError", "BackendSession", "ProxyTarget", "pass_lookup",
           "proxy_target"]
