"""Reading the PROXY header off a freshly accepted socket, before any protocol sees it.

The header is consumed at socket level — exactly its bytes, peeked first — so whatever follows
stays in the kernel for the connection proper: a TLS ClientHello on an ``ssl = yes`` listener
behind HAProxy reaches the TLS layer untouched. Parsing is :mod:`cote.login.haproxy`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from cote.log import Logger
from cote.login.haproxy import V2_HEADER, HeaderError, ProxyHeader, parse_header

MAX_HEADER = V2_HEADER + 65535


class HeaderReader:
    """Wait (up to ``timeout``) for the header on ``conn``; then ``done(header)``, or log why
    not, close the socket and ``done(None)``."""

    def __init__(self, conn: socket.socket, real_remote_ip: str, timeout: float, log: Logger,
                 done: Callable[[ProxyHeader | None], None]) -> None:
        self.conn = conn
        self.rip = real_remote_ip
        self.log = log
        self.done = done
        self.buffer = b""
        self.finished = False
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), self._readable)
        self.timer = loop.call_later(timeout, self._timed_out)

    def _readable(self) -> None:
        try:
            peeked = self.conn.recv(MAX_HEADER - len(self.buffer), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._finish(None)
            return
        if not peeked:
            self._finish(None)  # gone before saying anything
            return
        try:
            header = parse_header(self.buffer + peeked)
        except HeaderError as e:
            self._finish(None, e.log_text(self.rip))
            return
        if header is None:
            # Everything so far is part of the header: take it, wait for the rest.
            self.buffer += self.conn.recv(len(peeked))
            return
        self.conn.recv(header.length - len(self.buffer))
        self._finish(header)

    def _timed_out(self) -> None:
        self._finish(None, f"haproxy: Client timed out (rip={self.rip})")

    def _finish(self, header: ProxyHeader | None, error: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self.timer.cancel()
        asyncio.get_running_loop().remove_reader(self.conn.fileno())
        if header is None:
            if error:
                self.log.error(error)
            self.conn.close()
        self.done(header)
