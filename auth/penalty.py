"""Auth-failure penalties per remote IP, kept in anvil so they outlive auth processes.

Dovecot's rule: a request from an IP with penalty *p* > 0 waits 2 s doubled *p* − 1 times,
at most 15 s, less the time since the IP's last failure; each failure raises *p* (the same
wrong password repeated counts once: the password's checksum goes along), a success sets it
back to 0. IPv6 addresses are grouped by /48 (one attacker owns a whole prefix). Requests
flagged ``no-penalty`` (trusted networks) and requests without a remote IP are never delayed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import zlib

INIT_SECS = 2
MAX_SECS = 15
MAX_PENALTY = 16


def penalty_ident(ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/48", strict=False).network_address)
    return str(addr)


def penalty_secs(penalty: int) -> float:
    if penalty <= 0:
        return 0.0
    return float(min(MAX_SECS, INIT_SECS << min(penalty - 1, 8)))


def checksum(user: str, secret: bytes) -> str:
    return str(zlib.crc32(user.encode("utf-8", "surrogateescape") + b"\0" + secret) or 1)


class PenaltyClient:
    """This auth process's anvil connection (``ctx.anvil``), used one request at a time."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> bool:
        if self._writer is None and self.sock is not None:
            sock, self.sock = self.sock, None
            sock.setblocking(False)
            self._reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        return self._writer is not None

    async def delay(self, ip: str) -> float:
        ident = penalty_ident(ip)
        if ident is None:
            return 0.0
        async with self._lock:
            try:
                if not await self._connect():
                    return 0.0
                assert self._reader is not None and self._writer is not None
                self._writer.write(f"PENALTY-GET\t{ident}\n".encode())
                line = await asyncio.wait_for(self._reader.readline(), 5)
            except (OSError, TimeoutError):
                self._writer = None
                return 0.0  # anvil unreachable: no penalty rather than no logins
        value, _, last = line.decode().strip().partition("\t")
        try:
            penalty, since = int(value), time.time() - int(last or 0)
        except ValueError:
            return 0.0
        return max(0.0, penalty_secs(penalty) - since)

    async def record(self, ip: str, *, failed: bool, check: str = "0") -> None:
        ident = penalty_ident(ip)
        if ident is None:
            return
        async with self._lock:
            try:
                if not await self._connect():
                    return
                assert self._reader is not None and self._writer is not None
                if failed:
                    self._writer.write(f"PENALTY-GET\t{ident}\n".encode())
                    line = await asyncio.wait_for(self._reader.readline(), 5)
                    current = int(line.decode().split("\t", 1)[0] or 0)
                    value = min(MAX_PENALTY, current + 1)
                else:
                    value, check = 0, "0"
                self._writer.write(f"PENALTY-INC\t{ident}\t{check}\t{value}\n".encode())
            except (OSError, TimeoutError, ValueError):
                self._writer = None
