"""imap-hibernate: one process holding many IDLE clients, and the two hand-offs around it.

An imap process whose client has been in IDLE for ``imap_hibernate_timeout`` connects to the
``imap-hibernate`` socket and is sent this process's one inotify descriptor; it adds watches
for its mailbox's directories to it (the kernel checks the imap process's own permissions:
this process, the internal user, could not add them) and sends the client's socket and the
session state (``hibernate_state``, with the watch numbers), then exits (``hand_off``).
Dovecot passes one inotify descriptor per client instead; with one instance for all,
hibernated clients do not count toward ``fs.inotify.max_user_instances`` (128 by default
per uid, which a single virtual-mail uid reaches at 128 IDLE sessions).

This process keeps, per client, the socket, the encoded state, its watch numbers and a few
numbers; it never opens mail. It writes ``* OK Still here`` every
``imap_idle_notify_interval`` itself. Client bytes, EOF or an event on one of the client's
watches "unhibernates": socket and state go to the imap service's ``imap-master`` listener,
where a new imap process restores the session (``service.py``).

While a client is here its anvil entry (``imap/<ip>/<user>``) is this process's, so
``mail_max_userip_connections`` and ``coteadm who`` still count it; ``coteadm kick`` reaches
it through the per-process admin socket (``kick``), so one user's clients are closed and the
others stay. The sender's uid (SO_PEERCRED) goes into the state: the restoring process refuses
a user that does not map to it, so a process that can reach the socket cannot wake up as
somebody else.
"""

from __future__ import annotations

import heapq
import os
import re
import selectors
import signal
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cote.ipc import ServiceContext
from cote.log import Logger
from cote.login.anvilclient import ident
from cote.storage import notify

from .hibernate_state import HibernateState, HibernateStateError, decode, encode
from .settings import ImapSettings

SOCKET_NAME = "imap-hibernate"
MASTER_SOCKET_NAME = "imap-master"
SEND_TIMEOUT = 10.0
MAX_LINE = 64 << 20
MAX_WATCHES = 16
STILL_HERE = b"* OK Still here\r\n"
SHUTTING_DOWN = b"* BYE Server shutting down.\r\n"
UNHIBERNATE_FAILED = (b"* BYE [SERVERBUG] Internal error occurred. Refer to server log for "
                      b"more information.\r\n")
GREETING_WATCH = b"I\n"
"""imap-hibernate's first line, with its inotify descriptor riding on it."""
IN_IGNORED = 0x8000
IN_Q_OVERFLOW = 0x4000
_EVENT = struct.Struct("iIII")


class HandOffDeclined(Exception):
    """The hand-off did not happen for an expected reason (the mailbox changed meanwhile):
    the session stays, nothing to log."""


def send_state(sock: socket.socket, line: bytes, fds: list[int]) -> None:
    """The state line with the descriptors riding on its first bytes."""
    first = line[:65536]
    sent = socket.send_fds(sock, [first], fds)
    if sent < len(line):  # (a send of nothing to a peer that has answered is EPIPE)
        sock.sendall(line[sent:])


def receive_state(sock: socket.socket, max_fds: int = 1) -> tuple[bytes, list[int]]:
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


def hand_off(path: str, client_fd: int, dirs: Sequence[str] | None,
             state: HibernateState, changed: Callable[[], bool]) -> str:
    """Give the client to imap-hibernate, watching ``dirs`` (the selected mailbox's) on its
    inotify descriptor; "" on success, else why not (the caller keeps serving the client).
    ``changed`` is asked once the watches are in place: a change the session has not seen
    yet (its own watcher fired) raises HandOffDeclined instead of being lost."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(path)
            greeting, fds, _, _ = socket.recv_fds(sock, 64, 1)
            try:
                if greeting != GREETING_WATCH or len(fds) != 1:
                    return f"unexpected greeting {greeting[:40]!r} with {len(fds)} fds"
                state.watches = [notify.add_watch(fds[0], d) for d in dirs or ()]
            finally:
                for fd in fds:
                    os.close(fd)
            if changed():
                raise HandOffDeclined()
            send_state(sock, encode(state), [client_fd])
            reply = sock.recv(1024)
    except OSError as e:
        return f"{path}: {e}"
    if reply == b"+\n":
        return ""
    return f"imap-hibernate refused: {reply.decode('utf-8', 'replace').strip() or 'EOF'}"


def admin_address(base_dir: str, pid: int) -> bytes:
    """The abstract socket on which imap-hibernate process ``pid`` takes ``KICK`` (root
    only, checked with SO_PEERCRED)."""
    return f"\0cote-imap-hibernate-{zlib.crc32(base_dir.encode()):08x}-{pid}".encode()


def kick(base_dir: str, pid: int, targets: Iterable[tuple[str, str]]) -> int | None:
    """Ask imap-hibernate ``pid`` to close the clients of these (user, ip) pairs (ip ""
    for any); how many it closed, or None when ``pid`` is no imap-hibernate process."""
    lines = "".join(f"KICK\t{user}\t{ip}\n" for user, ip in targets).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(admin_address(base_dir, pid))
            sock.sendall(lines + b"END\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(64)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    return int(reply) if reply.strip().isdigit() else None


def watches_present(fd: int) -> set[int] | None:
    """The watch numbers the kernel holds on inotify descriptor ``fd`` (None: unknown)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            return {int(m, 16) for m in re.findall(rb"inotify wd:([0-9a-f]+)", f.read())}
    except OSError:
        return None


@dataclass(slots=True)
class _Client:
    """One hibernated client: the only per-client object this process keeps."""

    sock: socket.socket
    state: bytes
    anvil: str
    user: str
    ip: str
    due: float
    watches: tuple[int, ...] = ()
    out: int = 0


@dataclass(slots=True)
class _Incoming:
    """A connection that brings a client (from imap) or answers an unhibernation (to
    imap-master)."""

    sock: socket.socket
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    waking: _Client | None = None


class _Shutdown(Exception):
    """SIGTERM: say BYE to every client and exit."""


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
        self.by_watch: dict[int, set[int]] = {}
        """inotify watch number -> the client sockets' fds watching through it."""
        self.timers: list[tuple[float, int]] = []
        self.inotify = notify.inotify_init()
        self.sel.register(self.inotify, selectors.EVENT_READ, "inotify")

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
        try:
            socket.send_fds(sock, [GREETING_WATCH], [self.inotify])
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, _Incoming(sock))

    def incoming(self, inc: _Incoming) -> None:
        try:
            chunk, fds, _, _ = socket.recv_fds(inc.sock, 65536, 1)
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
        if not chunk and not inc.data and not inc.fds:
            inc.sock.close()  # the imap process changed its mind (HandOffDeclined)
            return
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
        if len(inc.fds) != 1:
            return f"expected the client socket, got {len(inc.fds)} fds"
        try:
            state = decode(bytes(inc.data))
        except HibernateStateError as e:
            return f"invalid state: {e}"
        watches = tuple(state.watches)
        if (state.mailbox is not None) != bool(watches) or len(watches) > MAX_WATCHES:
            return f"{len(watches)} watches for {'a' if state.mailbox else 'no'} mailbox"
        present = watches_present(self.inotify)
        if present is not None and not present.issuperset(watches):
            return "a watch has gone (its directory changed): try again"
        state.peer_uid = peer_uid(inc.sock)
        state.watches = []
        client = socket.socket(fileno=inc.fds[0])
        client.setblocking(False)
        key = ident("imap", state.remote_ip, state.user) if state.remote_ip else ""
        c = _Client(client, encode(state), key, state.user, state.remote_ip,
                    time.monotonic() + self.interval, watches)
        self._anvil("CONNECT", key)
        fd = client.fileno()
        self.clients[fd] = c
        self.sel.register(client, selectors.EVENT_READ, c)
        for wd in watches:
            self.by_watch.setdefault(wd, set()).add(fd)
        heapq.heappush(self.timers, (c.due, fd))
        self.ctx.client_connected()
        return ""

    # -- watches ------------------------------------------------------------------------------
    def changes(self) -> None:
        """inotify events: wake the clients watching through them."""
        try:
            data = os.read(self.inotify, 65536)
        except (BlockingIOError, InterruptedError):
            return
        woken: set[int] = set()
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                woken.update(self.clients)
                continue
            fds = self.by_watch.get(wd)
            if fds:
                woken.update(fds)
            elif not mask & IN_IGNORED:
                notify.rm_watch(self.inotify, wd)  # left by a hand-off that did not happen
        for fd in woken:
            c = self.clients.get(fd)
            if c is not None:
                self.unhibernate(c)

    # -- giving it back ---------------------------------------------------------------------
    def _drop(self, c: _Client) -> None:
        fd = c.sock.fileno()
        self.clients.pop(fd, None)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        for wd in c.watches:
            fds = self.by_watch.get(wd)
            if fds is None:
                continue
            fds.discard(fd)
            if not fds:
                del self.by_watch[wd]
                notify.rm_watch(self.inotify, wd)
        c.watches = ()

    def _forget(self, c: _Client) -> None:
        c.sock.close()
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
            send_state(master, line, [c.sock.fileno()])
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
        self._close(c, UNHIBERNATE_FAILED)

    def _close(self, c: _Client, bye: bytes) -> None:
        try:
            c.sock.send(bye)
        except OSError:
            pass
        self._forget(c)

    # -- administration ---------------------------------------------------------------------
    def admin(self, lsock: socket.socket) -> None:
        """One ``KICK`` request from coteadm (root): close those users' clients."""
        try:
            sock, _ = lsock.accept()
        except OSError:
            return
        with sock:
            try:
                sock.settimeout(SEND_TIMEOUT)
                if peer_uid(sock) != 0:
                    sock.sendall(b"-not root\n")
                    return
                data = b""
                while not (data.endswith(b"END\n") or len(data) > 1 << 20):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                sock.sendall(b"%d\n" % self.kick(data.decode("utf-8", "replace")))
            except OSError:
                return

    def kick(self, request: str) -> int:
        targets = set()
        for line in request.splitlines():
            args = line.split("\t")
            if len(args) == 3 and args[0] == "KICK":
                targets.add((args[1], args[2]))
        hit = [c for c in self.clients.values()
               if (c.user, c.ip) in targets or (c.user, "") in targets]
        for c in hit:
            self._drop(c)
            self.log.info(f"imap({c.user}): Disconnected: Kicked by an administrator")
            self._close(c, SHUTTING_DOWN)
        return len(hit)

    def shutdown(self) -> None:
        for c in list(self.clients.values()):
            self._drop(c)
            self._close(c, SHUTTING_DOWN)

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
        admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            admin.bind(admin_address(self.ctx.base_dir, os.getpid()))
            admin.listen(8)
            self.sel.register(admin, selectors.EVENT_READ, "admin")
        except OSError as e:
            self.log.error(f"imap-hibernate: no admin socket ({e}): kick closes all clients")
        self.sel.register(self.ctx.master_death_fd, selectors.EVENT_READ, "death")

        def on_term(_sig: int, _frame: object) -> None:
            raise _Shutdown()

        signal.signal(signal.SIGTERM, on_term)
        try:
            return self._loop(listeners, admin)
        except _Shutdown:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.shutdown()
            return 0

    def _loop(self, listeners: list[socket.socket], admin: socket.socket) -> int:
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
                if data == "inotify":
                    self.changes()
                elif data == "admin":
                    self.admin(admin)
                elif data is None:
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
    master_path = os.path.join(ctx.base_dir, MASTER_SOCKET_NAME)
    try:
        hibernator = Hibernator(ctx, ctx.log, master_path, settings.idle_notify_interval)
    except OSError as e:
        ctx.log.error(f"imap-hibernate: {e}")
        return 1
    ctx.status.report(ctx.available())
    return hibernator.run(listeners)
