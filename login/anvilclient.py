"""A login process's asyncio client for anvil (docs/process-contract.md, section 9).

The login process asks anvil how many sessions a user has from an IP (``LOOKUP
<service>/<ip>/<user>``) before it lets one more in (``mail_max_userip_connections``); the
mail processes register the sessions themselves (``cote.mailproc.anvilreg``). The socket is
the one the master connected for this process (``ctx.anvil``); requests are serialised,
because anvil answers in order on one connection.
"""

from __future__ import annotations

import asyncio
import socket

TIMEOUT = 5.0


class AnvilUnavailable(Exception):
    """anvil cannot be asked (no connection, closed, or no answer in time)."""


def ident(service: str, remote_ip: str, user: str) -> str:
    """``<service>/<ip>/<user>``, the user tab-escaped as Dovecot's processes send it."""
    escaped = (user.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r")
               .replace("\n", "\x01n"))
    return f"{service}/{remote_ip}/{escaped}"


class AnvilClient:
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.buffer = b""
        self.lock = asyncio.Lock()
        if sock is not None:
            sock.setblocking(False)

    async def _send(self, line: str) -> None:
        if self.sock is None:
            raise AnvilUnavailable("no anvil connection")
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, line.encode() + b"\n")
        except OSError as e:
            self.sock = None
            raise AnvilUnavailable(str(e)) from e

    async def _read_line(self) -> str:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buffer:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), TIMEOUT)
            except (OSError, TimeoutError) as e:
                self.sock = None
                raise AnvilUnavailable(f"no answer: {e}") from e
            if not chunk:
                self.sock = None
                raise AnvilUnavailable("anvil closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    async def lookup(self, key: str) -> int:
        async with self.lock:
            await self._send(f"LOOKUP\t{key}")
            answer = await self._read_line()
        if not answer.isdigit():
            raise AnvilUnavailable(f"invalid LOOKUP answer: {answer!r}")
        return int(answer)
