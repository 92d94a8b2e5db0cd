"""anvil: cross-process connection counts and authentication-failure penalties.

Login and mail processes report connections per ident (``<service>/<ip>/<user>``) so that
``mail_max_userip_connections`` can be enforced across processes, and auth reports failures per
remote IP to compute the auth-failure delay. One process (``cote/anvil``, the internal user,
chrooted to ``$base_dir/empty``), state in memory, served over the ``anvil`` and
``anvil-auth-penalty`` UNIX sockets.

Line protocol (UTF-8, fields separated by TAB, one request per line; see
docs/process-contract.md)::

    VERSION  anvil  1  0                  (optional greeting, no reply)
    CONNECT  <pid>  <ident>               (no reply)
    DISCONNECT  <pid>  <ident>            (no reply)
    KILL  <pid>                           (forget all connections of pid; no reply)
    LOOKUP  <ident>                       -> <count>
    CONNECT-DUMP                          -> <ident> TAB <count> TAB <pid,pid..> ... then ""
    PENALTY-GET  <ip>                     -> <penalty> TAB <last-update unix time>
    PENALTY-INC  <ip>  <checksum>  <value>(no reply; same checksum twice counts once)
    PENALTY-SET-EXPIRE-SECS  <secs>       (no reply)
    PENALTY-DUMP                          -> <ip> TAB <penalty> TAB <last-update> ... then ""

Connections registered through one socket connection are forgotten when that connection
closes, so a crashed login process cannot leave counts behind.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cote.ipc import ServiceContext

PENALTY_DEFAULT_EXPIRE_SECS = 3600.0
PENALTY_MAX = 16
CHECKSUMS_KEPT = 10


@dataclass
class Penalty:
    value: int = 0
    last_update: float = 0.0
    checksums: deque[str] = field(default_factory=lambda: deque(maxlen=CHECKSUMS_KEPT))


class AnvilState:
    """The sans-IO core: feed lines per connection id, get reply lines back."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        # ident -> Counter(pid -> count)
        self.connections: dict[str, Counter[int]] = {}
        # connection id -> list of (pid, ident) registered through it
        self.by_conn: dict[int, Counter[tuple[int, str]]] = {}
        self.penalties: dict[str, Penalty] = {}
        self.penalty_expire = PENALTY_DEFAULT_EXPIRE_SECS

    # -- connections ---------------------------------------------------------------------
    def connect(self, conn: int, pid: int, ident: str) -> None:
        self.connections.setdefault(ident, Counter())[pid] += 1
        self.by_conn.setdefault(conn, Counter())[(pid, ident)] += 1

    def disconnect(self, conn: int, pid: int, ident: str) -> None:
        pids = self.connections.get(ident)
        if pids is None or pids[pid] <= 0:
            return
        pids[pid] -= 1
        if pids[pid] <= 0:
            del pids[pid]
        if not pids:
            del self.connections[ident]
        owned = self.by_conn.get(conn)
        if owned is not None and owned[(pid, ident)] > 0:
            owned[(pid, ident)] -= 1
            if owned[(pid, ident)] <= 0:
                del owned[(pid, ident)]

    def kill_pid(self, pid: int) -> None:
        for ident in list(self.connections):
            pids = self.connections[ident]
            pids.pop(pid, None)
            if not pids:
                del self.connections[ident]
        for owned in self.by_conn.values():
            for key in [k for k in owned if k[0] == pid]:
                del owned[key]

    def lookup(self, ident: str) -> int:
        return sum(self.connections.get(ident, Counter()).values())

    def connection_closed(self, conn: int) -> None:
        for (pid, ident), n in self.by_conn.pop(conn, Counter()).items():
            pids = self.connections.get(ident)
            if pids is None:
                continue
            pids[pid] -= n
            if pids[pid] <= 0:
                del pids[pid]
            if not pids:
                del self.connections[ident]

    # -- penalties -----------------------------------------------------------------------
    def _penalty(self, ip: str) -> Penalty | None:
        p = self.penalties.get(ip)
        if p is not None and self.now() - p.last_update >= self.penalty_expire:
            del self.penalties[ip]
            return None
        return p

    def penalty_get(self, ip: str) -> tuple[int, int]:
        p = self._penalty(ip)
        return (0, 0) if p is None else (p.value, int(p.last_update))

    def penalty_inc(self, ip: str, checksum: str, value: int) -> None:
        p = self._penalty(ip) or self.penalties.setdefault(ip, Penalty())
        if checksum and checksum != "0" and checksum in p.checksums:
            p.last_update = self.now()  # same wrong password again: refresh, don't count
            return
        if checksum and checksum != "0":
            p.checksums.append(checksum)
        p.value = min(PENALTY_MAX, max(0, value))
        p.last_update = self.now()

    # -- the protocol -------------------------------------------------------------------
    def handle(self, conn: int, line: str) -> list[str] | None:
        """One request line; returns reply lines (None = no reply). Raises ValueError."""
        args = line.split("\t")
        cmd = args[0]
        if cmd == "VERSION":
            return None
        if cmd in ("CONNECT", "DISCONNECT") and len(args) == 3:
            pid = int(args[1])
            (self.connect if cmd == "CONNECT" else self.disconnect)(conn, pid, args[2])
            return None
        if cmd == "KILL" and len(args) == 2:
            self.kill_pid(int(args[1]))
            return None
        if cmd == "LOOKUP" and len(args) == 2:
            return [str(self.lookup(args[1]))]
        if cmd == "CONNECT-DUMP" and len(args) == 1:
            out = [f"{ident}\t{sum(p.values())}\t{','.join(str(x) for x in sorted(p))}"
                   for ident, p in sorted(self.connections.items())]
            return [*out, ""]
        if cmd == "PENALTY-GET" and len(args) == 2:
            value, last = self.penalty_get(args[1])
            return [f"{value}\t{last}"]
        if cmd == "PENALTY-INC" and len(args) == 4:
            self.penalty_inc(args[1], args[2], int(args[3]))
            return None
        if cmd == "PENALTY-SET-EXPIRE-SECS" and len(args) == 2:
            self.penalty_expire = float(int(args[1]))
            return None
        if cmd == "PENALTY-DUMP" and len(args) == 1:
            out = []
            for ip in sorted(self.penalties):
                p = self._penalty(ip)
                if p is not None:
                    out.append(f"{ip}\t{p.value}\t{int(p.last_update)}")
            return [*out, ""]
        raise ValueError(f"Unknown command: {line[:80]!r}")


class _Conn:
    __slots__ = ("buf", "out", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.out = b""


def run(ctx: ServiceContext) -> int:
    """Entry point of the anvil service."""
    state = AnvilState()
    sel = selectors.DefaultSelector()
    for lst in ctx.listeners:
        if lst.sock is not None:
            lst.sock.setblocking(False)
            sel.register(lst.sock, selectors.EVENT_READ, "listener")
    sel.register(ctx.master_death_fd, selectors.EVENT_READ, "death")
    ctx.status.report(ctx.client_limit)
    conns: dict[int, _Conn] = {}
    while True:
        for key, events in sel.select():
            if key.data == "death":
                return 0
            if key.data == "listener":
                lsock = key.fileobj
                assert isinstance(lsock, socket.socket)
                try:
                    sock, _ = lsock.accept()
                except OSError:
                    continue
                sock.setblocking(False)
                conns[sock.fileno()] = _Conn(sock)
                sel.register(sock, selectors.EVENT_READ, "client")
                ctx.client_connected()
                continue
            c = conns[key.fd]
            closed = False
            if events & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    closed = True
                elif data:
                    c.buf += data
                    *lines, c.buf = c.buf.split(b"\n")
                    for raw in lines:
                        try:
                            reply = state.handle(key.fd, raw.decode("utf-8", "replace"))
                        except ValueError as e:
                            ctx.log.error(f"anvil client: {e}")
                            closed = True
                            break
                        if reply is not None:
                            c.out += "".join(f"{r}\n" for r in reply).encode()
            if c.out and not closed:
                try:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
            if closed:
                sel.unregister(c.sock)
                del conns[key.fd]
                state.connection_closed(key.fd)
                c.sock.close()
                ctx.client_disconnected()
            else:
                sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0),
                           "client")
