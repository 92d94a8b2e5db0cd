"""The process contract between the master and the service processes it forks.

Everything a service implementation (login, auth, mail processes, anvil, log, scripts) needs to
talk to the master lives here, so service code never imports the master itself:

- :class:`ServiceContext`, the object an entry point ``run(ctx)`` receives in the forked child;
- the *status channel*: a pipe shared by all processes of one service on which each process
  reports how many more clients it can take (fixed 12-byte records, atomic pipe writes);
- the *master-death pipe*: the master holds the write end, children the read end; EOF means the
  master is gone;
- fd passing over UNIX sockets (``SCM_RIGHTS``), used between login and mail processes.

See docs/process-contract.md for the rules a service must follow.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from cote.log import Logger

_setproctitle: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - declared dependency
    _setproctitle = None

# pid, generation (config reload count: stale reports are ignored), available client count
STATUS = struct.Struct("=iII")

# Environment handed to exec'd programs (plain `executable = /path/prog` services).
ENV_STATUS_FD = "COTE_STATUS_FD"
ENV_DEATH_FD = "COTE_MASTER_DEATH_FD"
ENV_SERVICE = "COTE_SERVICE"
ENV_CONFIG = "COTE_CONFIG"
ENV_CLIENT_LIMIT = "COTE_CLIENT_LIMIT"
ENV_SERVICE_COUNT = "COTE_SERVICE_COUNT"
ENV_GENERATION = "COTE_GENERATION"  # goes into every status record
ENV_LISTENERS = "COTE_LISTENERS"  # "name:kind:ssl:haproxy" per fd from 3, comma separated

# Exit code of a process that ran out of memory (Dovecot's FATAL_OUTOFMEM).
EXIT_OUT_OF_MEMORY = 83
# Exit code of a process that failed before serving (Dovecot's FATAL_DEFAULT / FATAL_EXEC).
EXIT_FATAL = 89
EXIT_EXEC_FAILED = 84


# -- fd passing ---------------------------------------------------------------------------
def send_fds(sock: socket.socket, data: bytes, fds: Sequence[int]) -> int:
    """Send ``data`` (must be non-empty) with ``fds`` attached in one SCM_RIGHTS message."""
    if not data:
        raise ValueError("fd passing needs at least one byte of data")
    return socket.send_fds(sock, [data], list(fds))


def recv_fds(sock: socket.socket, bufsize: int = 4096, maxfds: int = 4) -> tuple[bytes, list[int]]:
    """Receive data and any fds sent with it. Returns (b"", []) at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, bufsize, maxfds)
    return data, list(fds)


# -- status channel -----------------------------------------------------------------------
STATUS_MIN_INTERVAL_SECS = 1.0  # between reports that change nothing the master acts on
def pack_status(pid: int, generation: int, available: int) -> bytes:
    return STATUS.pack(pid, generation, max(0, available))


def unpack_statuses(buf: bytearray) -> list[tuple[int, int, int]]:
    """Take every complete record off the front of ``buf`` (partial tail stays)."""
    n = len(buf) // STATUS.size
    out = [STATUS.unpack_from(buf, i * STATUS.size) for i in range(n)]
    del buf[: n * STATUS.size]
    return out


class StatusReporter:
    """Child side of the status channel: tell the master how many more clients we can take.

    Writes are 12 bytes, below PIPE_BUF, hence atomic even though every process of the service
    shares the pipe. A report is only written when the number changes, and at once only when
    the master acts on the change: the process became full or no longer is (it forks or stops
    forking), became idle or no longer is (idle_kill). Other changes of a process serving many
    clients (a login process's 998 -> 997) are sent a second after the previous report, by a
    timer of the process's event loop (:meth:`defer_with`): as in Dovecot's
    master_status_update, the master is not woken for every client. Without a loop every
    change is sent at once.
    """

    def __init__(self, fd: int, generation: int, client_limit: int) -> None:
        self.fd = fd
        self.generation = generation
        self.client_limit = client_limit
        self.available = client_limit
        self._last: int | None = None
        self._sent_at = 0.0
        self._call_later: Callable[[float, Callable[[], None]], object] | None = None
        self._flush_pending = False

    def defer_with(self, call_later: Callable[[float, Callable[[], None]], object]) -> None:
        """Let reports the master need not act on wait for a timer (``loop.call_later``)."""
        self._call_later = call_later

    def _urgent(self) -> bool:
        last = self._last
        return last is None or any((last == edge) != (self.available == edge)
                                   for edge in (0, self.client_limit))

    def report(self, available: int | None = None) -> None:
        if available is not None:
            self.available = available
        if self._last == self.available or self.fd < 0:
            return
        now = time.monotonic()
        wait = self._sent_at + STATUS_MIN_INTERVAL_SECS - now
        if self._call_later is not None and wait > 0 and not self._urgent():
            if not self._flush_pending:
                self._flush_pending = True
                self._call_later(wait, self._flush)
            return
        self._send(now)

    def _send(self, now: float) -> None:
        self._last, self._sent_at = self.available, now
        try:
            os.write(self.fd, pack_status(os.getpid(), self.generation, self.available))
        except OSError:
            pass  # master gone; the death pipe tells the service

    def _flush(self) -> None:
        self._flush_pending = False
        if self._last != self.available and self.fd >= 0:
            self._send(time.monotonic())


# -- master-death pipe ------------------------------------------------------------------------
def master_died(fd: int) -> bool:
    """True when the master-death pipe is at EOF (non-blocking check)."""
    readable, _, _ = select.select([fd], [], [], 0)
    if not readable:
        return False
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False


# -- listeners and the context ------------------------------------------------------------------
@dataclass(frozen=True)
class ListenerSocket:
    """One listening socket handed to a service process."""

    name: str          # listener name: "imap", "imaps", "auth-client", "login/imap", ...
    kind: str          # "inet" | "unix" | "fifo"
    sock: socket.socket | None  # None for fifos
    fd: int
    ssl: bool = False      # implicit TLS (inet_listener ... { ssl = yes })
    haproxy: bool = False  # expects a HAProxy PROXY header
    path: str = ""         # unix/fifo path, "" for inet
    address: str = ""      # inet address as bound ("*", "::", "127.0.0.1")
    port: int = 0


@dataclass
class ServiceContext:
    """What a service entry point ``run(ctx: ServiceContext) -> int | None`` receives.

    The child is already forked, chrooted, rlimited and running as the service's user.
    Its return value is the exit code (None = 0).
    """

    name: str                      # service name ("imap-login", "auth", "quota-warning", ...)
    config: Any                    # cote.config.Config in effect for this process
    settings: Any                  # the service's cote.config.Section (None for synthetic ones)
    listeners: list[ListenerSocket]
    status: StatusReporter
    master_death_fd: int           # readable at EOF when the master has died
    log: Logger
    client_limit: int
    service_count: int             # 0 = unlimited clients over the process lifetime
    idle_kill: float               # 0 = never
    executable: list[str]          # the `executable` setting split on whitespace
    base_dir: str
    generation: int
    clients: int = 0               # current clients (kept by client_connected/_disconnected)
    served: int = 0                # clients accepted over the process lifetime
    accepting: bool = True         # False after SIGQUIT (reload/stop) or service_count reached
    stop_hooks: list[Callable[[], None]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # service-specific hand-overs
    title: str = ""                # process title as set by the master: "cote/imap-login"
    master_dead: bool = False      # set by install_asyncio_handlers when the master is gone
    anvil: socket.socket | None = None  # this process's own connection to anvil (blocking)

    def set_title(self, detail: str = "") -> None:
        """``cote/imap`` -> ``cote/imap [user1 127.0.0.1 IDLE]`` (empty detail resets)."""
        if _setproctitle is not None and self.title:
            _setproctitle(f"{self.title} [{detail}]" if detail else self.title)

    # -- the bookkeeping every service must do ------------------------------------------------
    def client_connected(self) -> None:
        """Call after accepting a client: updates the status channel."""
        self.clients += 1
        self.served += 1
        if self.service_count and self.served >= self.service_count:
            self.accepting = False
        self.status.report(self.available())

    def client_disconnected(self) -> None:
        self.clients = max(0, self.clients - 1)
        self.status.report(self.available())

    def available(self) -> int:
        if not self.accepting:
            return 0
        room = self.client_limit - self.clients
        if self.service_count:
            room = min(room, self.service_count - self.served)
        return max(0, room)

    def should_exit(self) -> bool:
        """True when the process has nothing left to do (no clients and no longer accepting)."""
        return not self.accepting and self.clients == 0

    def stop_accepting(self) -> None:
        """Stop taking clients (master asked, or master died). Runs the registered hooks once."""
        if not self.accepting and not self.stop_hooks:
            return
        self.accepting = False
        self.status.report(0)
        hooks, self.stop_hooks = self.stop_hooks, []
        for hook in hooks:
            hook()

    def on_stop_accepting(self, hook: Callable[[], None]) -> None:
        """Register a callback run (from the signal handler or the death check) on stop."""
        self.stop_hooks.append(hook)

    def install_default_signals(self) -> None:
        """SIGQUIT: stop accepting (reload/stop); SIGINT: idle-kill request. Either one exits
        the process at once when it has no clients. SIGUSR2 ("all processes full", sent to
        type=login services at process_limit) is ignored unless the service handles it.
        Services running an asyncio loop use :meth:`install_asyncio_handlers` instead."""

        def on_quit(_sig: int, _frame: object) -> None:
            self.stop_accepting()
            if self.clients == 0:
                os._exit(0)

        def on_idle(_sig: int, _frame: object) -> None:
            if self.clients == 0:
                os._exit(0)

        signal.signal(signal.SIGQUIT, on_quit)
        signal.signal(signal.SIGINT, on_idle)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # "all full" (login services) unless handled

    def install_asyncio_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        """For services on an asyncio loop (instead of :meth:`install_default_signals`):
        SIGQUIT -> :meth:`stop_accepting`; SIGINT (idle kill) -> stop_accepting when idle;
        master death (EOF on the death pipe) -> ``master_dead = True`` and stop_accepting.
        The service exits once :meth:`should_exit` is true."""
        self.status.defer_with(loop.call_later)
        loop.add_signal_handler(signal.SIGQUIT, self.stop_accepting)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # replace with your own "all full" handler
        loop.add_signal_handler(
            signal.SIGINT, lambda: self.stop_accepting() if self.clients == 0 else None)
        fd = self.master_death_fd
        os.set_blocking(fd, False)

        def on_death() -> None:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(fd)
                self.master_dead = True
                self.stop_accepting()

        loop.add_reader(fd, on_death)

    def listener(self, name: str) -> ListenerSocket:
        for lst in self.listeners:
            if lst.name == name or os.path.basename(lst.name) == name:
                return lst
        raise KeyError(name)


def format_listener_env(listeners: Sequence[ListenerSocket]) -> str:
    return ",".join(
        f"{lst.name}:{lst.kind}:{int(lst.ssl)}:{int(lst.haproxy)}" for lst in listeners
    )
