"""imap-hibernate: one process holding many IDLE clients, and the two hand-offs around it.

An imap process whose client has been in IDLE for ``imap_hibernate_timeout`` sends the
client's socket, its mailbox's inotify descriptor and the session state
(``hibernate_state``) to the ``imap-hibernate`` socket and exits (``hand_off``). This process
keeps, per client, the socket, the descriptor, the encoded state and a few numbers; it never
opens mail (it runs as ``$default_internal_user`` as in Dovecot): the imap process opened the
watch on the user's directories and passed it. It writes ``* OK Still here`` every
``imap_idle_notify_interval`` itself. Anything on either descriptor (client bytes, EOF, a
mailbox change) "unhibernates": socket, descriptor and state go to the imap service's
``imap-master`` listener, where a new imap process restores the session (``service.py``).

While a client is here its anvil entry (``imap/<ip>/<user>``) is this process's, so
``mail_max_userip_connections`` and ``coteadm who`` still count it. The sender's uid
(SO_PEERCRED) goes into the state: the restoring process refuses a user that does not map to
it, so a process that can reach the socket cannot wake up as somebody else.
"""

from __future__ import annotations

import heapq
import os
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

from cote.ipc import ServiceContext
from cote.log import Logger
from cote.login.anvilclient import ident
from cote.storage.api import ChangeWatcher

from .hibernate_state import HibernateState, HibernateStateError, decode, encode
from .settings import ImapSettings

SOCKET_NAME = "imap-hibernate"
MASTER_SOCKET_NAME = "imap-master"
SEND_TIMEOUT = 10.0
MAX_LINE = 64 << 20
STILL_HERE = b"* OK Still here\r\n"
UNHIBERNATE_FAILED = (b"* BYE [SERVERBUG] Internal error occurred. Refer to server log for "
                      b"more information.\r\n")


class FdWatcher(ChangeWatcher):
    """A change watcher around an inherited inotify descriptor (a restored session keeps
    the one the first process opened: no change between two processes is missed)."""

    passable = True

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self.fd

    def wait(self, timeout: float | None = None) -> bool:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.fd, selectors.EVENT_READ)
            return bool(sel.select(timeout))
        finally:
            sel.close()

    def drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def send_state(sock: socket.socket, line: bytes, fds: list[int]) -> None:
    """The state line with the descriptors riding on its first bytes."""
    first = line[:65536]
    sent = socket.send_fds(sock, [first], fds)
    if sent < len(line):  # (a send of nothing to a peer that has answered is EPIPE)
        sock.sendall(line[sent:])


def receive_state(sock: socket.socket, max_fds: int = 2) -> tuple[bytes, list[int]]:
    """Read one state line and the descriptors that came with it (blocking socket)."""
    data, fds = bytearray(), []
    while not data.endswith(b"\n"):
        chunk, new_fds, _, _ = socket.recv_fds(sock, 65536, max_fds)
        fds += new_fds
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            break
    return bytes(data), fds


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def hand_off(path: str, client_fd: int, notify_fd: int | None, state: HibernateState) -> str:
    """Give the client to imap-hibernate; "" on success, else why not (the caller keeps
    serving the client)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(path)
            fds = [client_fd] + ([notify_fd] if notify_fd is not None else [])
            send_state(sock, encode(state), fds)
            reply = sock.recv(1024)
    except OSError as e:
        return f"{path}: {e}"
    if reply == b"+\n":
        return ""
    return f"imap-hibernate refused: {reply.decode('utf-8', 'replace').strip() or 'EOF'}"


@dataclass(slots=True)
class _Client:
    """One hibernated client: the only per-client object this process keeps."""

    sock: socket.socket
    notify: int
    state: bytes
    anvil: str
    user: str
    due: float
    out: int = 0


@dataclass(slots=True)
class _Incoming:
    """A connection that brings a client (from imap) or answers an unhibernation (to
    imap-master)."""

    sock: socket.socket
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    waking: _Client | None = None


class Hibernator:
    """The selector loop of the imap-hibernate process."""

    def __init__(self, ctx: ServiceContext, log: Logger, master_path: str,
                 notify_interval: float) -> None:
        self.ctx = ctx
        self.log = log
        self.master_path = master_path
        self.interval = notify_interval
        self.sel = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}
        self.by_notify: dict[int, _Client] = {}
        self.timers: list[tuple[float, int]] = []

    # -- anvil ----------------------------------------------------------------------------
    def _anvil(self, command: str, key: str) -> None:
        if self.ctx.anvil is None or not key:
            return
        try:
            self.ctx.anvil.sendall(f"{command}\t{os.getpid()}\t{key}\n".encode())
        except OSError:
            self.ctx.anvil = None

    # -- taking a client -------------------------------------------------------------------
    def accept(self, lsock: socket.socket) -> None:
        try:
            sock, _ = lsock.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, _Incoming(sock))

    def incoming(self, inc: _Incoming) -> None:
        try:
            chunk, fds, _, _ = socket.recv_fds(inc.sock, 65536, 2)
        except BlockingIOError:
            return
        except OSError:
            chunk, fds = b"", []
        inc.fds += fds
        inc.data += chunk
        if inc.waking is not None:
            if not chunk or inc.data.endswith(b"\n"):
                self._woken(inc)
            return
        if chunk and not inc.data.endswith(b"\n") and len(inc.data) <= MAX_LINE:
            return
        self.sel.unregister(inc.sock)
        error = self._take(inc) if chunk else "connection closed before the state"
        if error:
            self.log.error(f"Failed to hibernate a client: {error}")
            for fd in inc.fds:
                os.close(fd)
            reply = f"-{error}\n".encode()
        else:
            reply = b"+\n"
        try:
            inc.sock.setblocking(True)
            inc.sock.settimeout(SEND_TIMEOUT)
            inc.sock.sendall(reply)
        except OSError:
            pass  # the imap process has gone: it sees no "+" and ... it is gone anyway
        inc.sock.close()

    def _take(self, inc: _Incoming) -> str:
        if not 1 <= len(inc.fds) <= 2:
            return f"expected the client socket and a notify fd, got {len(inc.fds)} fds"
        try:
            state = decode(bytes(inc.data))
        except HibernateStateError as e:
            return f"invalid state: {e}"
        if (state.mailbox is not None) != (len(inc.fds) == 2):
            return "notify fd missing or unexpected"
        state.peer_uid = peer_uid(inc.sock)
        client = socket.socket(fileno=inc.fds[0])
        client.setblocking(False)
        notify = inc.fds[1] if len(inc.fds) == 2 else -1
        key = ident("imap", state.remote_ip, state.user) if state.remote_ip else ""
        c = _Client(client, notify, encode(state), key, state.user,
                     time.monotonic() + self.interval)
        self._anvil("CONNECT", key)
        self.clients[client.fileno()] = c
        self.sel.register(client, selectors.EVENT_READ, c)
        if notify >= 0:
            os.set_blocking(notify, False)
            self.by_notify[notify] = c
            self.sel.register(notify, selectors.EVENT_READ, c)
        heapq.heappush(self.timers, (c.due, client.fileno()))
        self.ctx.client_connected()
        return ""

    # -- giving it back ---------------------------------------------------------------------
    def _drop(self, c: _Client) -> None:
        fd = c.sock.fileno()
        self.clients.pop(fd, None)
        for f in (fd, c.notify):
            if f >= 0:
                try:
                    self.sel.unregister(f)
                except (KeyError, ValueError):
                    pass
        self.by_notify.pop(c.notify, None)

    def _forget(self, c: _Client) -> None:
        c.sock.close()
        if c.notify >= 0:
            os.close(c.notify)
            c.notify = -1
        self._anvil("DISCONNECT", c.anvil)
        self.ctx.client_disconnected()

    def unhibernate(self, c: _Client) -> None:
        self._drop(c)
        try:
            state = decode(c.state)
            state.added_out += c.out
            line = encode(state)
            master = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            master.settimeout(SEND_TIMEOUT)
            master.connect(self.master_path)
            fds = [c.sock.fileno()] + ([c.notify] if c.notify >= 0 else [])
            send_state(master, line, fds)
        except (OSError, HibernateStateError) as e:
            self._failed(c, f"{self.master_path}: {e}")
            return
        master.setblocking(False)
        self.sel.register(master, selectors.EVENT_READ, _Incoming(master, waking=c))

    def _woken(self, inc: _Incoming) -> None:
        self.sel.unregister(inc.sock)
        inc.sock.close()
        for fd in inc.fds:
            os.close(fd)
        c = inc.waking
        assert c is not None
        if bytes(inc.data) == b"+\n":
            self._forget(c)
        else:
            reason = bytes(inc.data).decode("utf-8", "replace").strip() or "no reply"
            self._failed(c, f"imap refused: {reason}")

    def _failed(self, c: _Client, error: str) -> None:
        self.log.error(f"Failed to unhibernate {c.user}: {error}")
        try:
            c.sock.send(UNHIBERNATE_FAILED)
        except OSError:
            pass
        self._forget(c)

    # -- keepalive ---------------------------------------------------------------------------
    def keepalive(self) -> float | None:
        """Write ``* OK Still here`` to every client due; seconds until the next one."""
        now = time.monotonic()
        while self.timers:
            due, fd = self.timers[0]
            c = self.clients.get(fd)
            if c is None or c.due != due:
                heapq.heappop(self.timers)  # gone, or a later entry is current
                continue
            if due > now:
                return due - now
            heapq.heappop(self.timers)
            try:
                c.out += c.sock.send(STILL_HERE)
            except BlockingIOError:
                pass
            except OSError:
                pass  # reading will find the connection gone
            c.due = now + self.interval
            heapq.heappush(self.timers, (c.due, fd))
        return None

    # -- loop ----------------------------------------------------------------------------------
    def run(self, listeners: list[socket.socket]) -> int:
        for lsock in listeners:
            lsock.setblocking(False)
            self.sel.register(lsock, selectors.EVENT_READ, None)
        self.sel.register(self.ctx.master_death_fd, selectors.EVENT_READ, "death")
        accepting = True
        while True:
            if accepting and not self.ctx.accepting:
                accepting = False
                for lsock in listeners:
                    self.sel.unregister(lsock)
            if not accepting and not self.clients:
                return 0
            timeout = self.keepalive()
            for key, _ in self.sel.select(timeout):
                data = key.data
                if data == "death":
                    return 0
                if data is None:
                    assert isinstance(key.fileobj, socket.socket)
                    self.accept(key.fileobj)
                elif isinstance(data, _Incoming):
                    self.incoming(data)
                elif isinstance(data, _Client) and data.sock.fileno() in self.clients:
                    self.unhibernate(data)


def run(ctx: ServiceContext) -> int:
    """The master's entry point for service ``imap-hibernate``."""
    ctx.install_default_signals()
    cfg = ctx.config.lookup(protocol="imap")
    settings = ImapSettings.from_config(cfg)
    listeners = [lst.sock for lst in ctx.listeners if lst.kind == "unix" and lst.sock is not None]
    if not listeners:
        ctx.log.error("imap-hibernate service has no unix_listener (imap-hibernate)")
        return 1
    ctx.status.report(ctx.available())
    master_path = os.path.join(ctx.base_dir, MASTER_SOCKET_NAME)
    return Hibernator(ctx, ctx.log, master_path, settings.idle_notify_interval).run(listeners)
