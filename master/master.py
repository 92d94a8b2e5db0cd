"""The master: one single-threaded selector loop that supervises every service process.

Signal handlers only write the signal number to a self-pipe (``signal.set_wakeup_fd``); the
loop reads it and dispatches (HUP reload, TERM/INT stop, USR1 reopen logs, CHLD reap). No event
loop runs while forking, and the master forks from a quiet, gc-frozen state, so children start
warm. Per service the master keeps the status pipe its processes report on; it watches a
service's listeners only while no process of the service can take a client, forks when one is
needed and the limits allow, and queues then drops connections at ``process_limit`` as Dovecot
does (10 s queue, warning at most once a minute).
"""

from __future__ import annotations

import _signal  # the C half of signal (see _sigmask)
import contextlib
import errno
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cote.ipc import unpack_statuses
from cote.master import control, daemon, listeners, registry, settings
from cote.master.child import ChildPlan, run_child
from cote.master.logservice import LogSink, LogTargets, service_prefix
from cote.master.script import program_args
from cote.master.settings import ListenerSpec, MasterSettings, ServiceSpec, SettingsError

VERSION = "0.1.0"
THROTTLE_MIN_SECS = 2.0
THROTTLE_MAX_SECS = 60.0
DROP_TIMEOUT_SECS = 10.0
DROP_WARN_INTERVAL_SECS = 60.0
MAX_DIE_WAIT_SECS = 5.0
PREFORK_MAX_AT_ONCE = 10
GC_COLLECT_INTERVAL_SECS = 60.0
SIGNAL_ALL_FULL = signal.SIGUSR2  # to type=login processes at process_limit
MAX_EXIT_FAILURES_IN_SEC = 10  # initialized processes failing faster than this: throttle too
# Services whose processes serve logged-in users: left running by shutdown_clients = no.
MAIL_SERVICES = frozenset({"imap", "pop3", "managesieve", "submission", "lmtp"})
SPECIAL_KEEP = ("log", "anvil")
WARM_SPARES = 2  # processes kept forked ahead for one-client-per-process services
WARM_MAIL_SERVICES = ("imap", "pop3", "managesieve")
# signal.pthread_sigmask turns the old mask into a set of Signals enums on every call; right
# after fork() each object it makes costs the master a copy-on-write page fault (the profile
# of a login burst had it at 14 % of the master's time). The C function returns plain ints.
_sigmask: Callable[[int, Iterable[int]], set[int]] = _signal.pthread_sigmask

MASTER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD,
                  signal.SIGQUIT)  # kept over reloads, like Dovecot's log and anvil processes


class StartupError(Exception):
    """The master cannot start (bad config, bind failure, already running)."""


@dataclass(eq=False)
class Process:
    pid: int
    service: Service
    generation: int
    available: int
    started: float
    idle_since: float
    uid: int
    initialized: bool = False
    stopping: bool = False       # we sent TERM/QUIT: its exit is expected
    idle_kill_sent: bool = False


@dataclass(eq=False)
class Service:
    spec: ServiceSpec
    impl: registry.Implementation
    bound: list[listeners.Bound]
    generation: int
    credentials: settings.Credentials | None
    log_fd: int
    settings_section: Any
    status_r: int = -1
    status_w: int = -1
    status_buf: bytearray = field(default_factory=bytearray)
    processes: dict[int, Process] = field(default_factory=dict)
    throttle_until: float = 0.0
    throttle_secs: float = 0.0
    listening: bool = False
    drop_at: float | None = None
    last_drop_warning: float = -1e18
    exit_failure_second: int = -1
    exit_failures_in_sec: int = 0
    retired: bool = False
    prepared: dict[str, Any] = field(default_factory=dict)  # impl.prepare(config), per reload

    @property
    def name(self) -> str:
        return self.spec.name

    def process_avail(self) -> int:
        return sum(1 for p in self.processes.values() if p.available > 0 and not p.stopping)

    def process_count(self) -> int:
        return sum(1 for p in self.processes.values() if not p.stopping)

    def min_avail(self) -> int:
        if self.spec.type in ("log", "anvil") or self.spec.name in SPECIAL_KEEP:
            return max(1, self.spec.process_min_avail)
        if self.warm_spares():
            # Mail services, and login services that fork a process per client, keep a few
            # processes ahead (forked warm, from the master's frozen state): clients never
            # wait for a fork, and a burst is not served one fork at a time. Dovecot forks
            # on demand; only `ps` tells apart.
            return max(self.spec.process_min_avail,
                       min(WARM_SPARES, max(0, self.spec.process_limit - 1)))
        return self.spec.process_min_avail

    def warm_spares(self) -> bool:
        # (mail processes with service_count != 1 are spares again after each client)
        if self.spec.type == "login":
            return self.spec.service_count == 1
        return self.spec.name in WARM_MAIL_SERVICES


Loader = Callable[[str], Any]
# (spec, implementation, credentials or None, the service's config Section)
Planned = tuple[ServiceSpec, registry.Implementation, settings.Credentials | None, Any,
                dict[str, Any]]


class Master:
    def __init__(self, config_path: str, loader: Loader, *, foreground: bool = True) -> None:
        self.config_path = os.path.abspath(config_path)
        self.loader = loader
        self.foreground = foreground
        self.as_root = os.geteuid() == 0
        self.cfg: Any = None
        self.ms: MasterSettings | None = None
        self.sink = LogSink(LogTargets(log_path="/dev/stderr"))
        self.listeners = listeners.ListenerSet(self.as_root)
        self.services: dict[str, Service] = {}
        self.retired: list[Service] = []
        self.generation = 0
        self.sel = selectors.DefaultSelector()
        self.log_pipes: dict[str, tuple[int, int]] = {}
        self.log_ctl: socket.socket | None = None
        self.death_r = self.death_w = -1
        self.sig_r = self.sig_w = -1
        self.control_sock: socket.socket | None = None
        self.control_conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.warned_unimplemented: set[str] = set()
        self.shutting_down = False
        self.stop_requested = False
        self.title_base = "cote"
        self.started = time.monotonic()
        self.running = False
        self.last_collect = 0.0
        self.startup_notes: list[tuple[str, str]] = []

    # -- logging -------------------------------------------------------------------------
    def log(self, level: str, text: str, prefix: str = "master: ") -> None:
        self.sink.write(level, prefix, text)

    def note(self, level: str, text: str) -> None:
        """Log now, or right after the start-up line when not running yet."""
        if self.running:
            self.log(level, text)
        else:
            self.startup_notes.append((level, text))

    # -- start-up ------------------------------------------------------------------------
    def load(self) -> tuple[Any, MasterSettings]:
        cfg = self.loader(self.config_path)
        return cfg, settings.build(cfg)

    def prepare(self) -> None:
        """Everything that can fail with a clear message before daemonising."""
        self.listeners.activated = listeners.systemd_sockets()
        try:
            self.cfg, self.ms = self.load()
        except SettingsError as e:
            raise StartupError(str(e)) from None
        ms = self.ms
        self.sink = LogSink(LogTargets.from_settings(ms))
        inst = ms.instance_name
        self.title_base = "cote" if inst in ("", "dovecot", "cote") else f"cote-{inst}"
        try:
            daemon.check_pid_file(ms.base_dir)
        except daemon.AlreadyRunning as e:
            self.log("Fatal", str(e))
            raise StartupError(str(e)) from None
        try:
            daemon.make_base_dirs(ms.base_dir, ms.default_login_user, self.config_path,
                                  self.as_root)
        except OSError as e:
            raise StartupError(f"base_dir {ms.base_dir}: {e}") from None
        registry.warm_up()
        try:
            services = self._plan_services(ms, self.cfg)
        except (SettingsError, listeners.ListenerError, OSError) as e:
            raise StartupError(str(e)) from None
        self._install(services)
        self._bind_control()

    def _plan_services(self, ms: MasterSettings, cfg: Any) -> list[Planned]:
        """Resolve implementations and credentials, bind listeners (into self.pending)."""
        planned = []
        specs = list(ms.services)
        names = {s.name for s in specs}
        if "log" not in names:
            specs.insert(0, ServiceSpec(name="log", executable=("log",), type="log",
                                        process_limit=1, client_limit=1000))
        if "anvil" not in names:
            specs.append(ServiceSpec(
                name="anvil", executable=("anvil",), type="anvil", process_limit=1,
                process_min_avail=1, client_limit=1000, user=ms.default_internal_user,
                chroot=os.path.join(ms.base_dir, "empty"),
                listeners=tuple(ListenerSpec(kind="unix", name=n,
                                             path=os.path.join(ms.base_dir, n))
                                for n in ("anvil", "anvil-auth-penalty"))))
        sections = {s.name: s for s in cfg.sections("service")} if cfg is not None else {}
        for spec in specs:
            try:
                impl = registry.resolve(spec.executable)
            except registry.NotImplementedYet:
                if spec.name not in self.warned_unimplemented:
                    self.warned_unimplemented.add(spec.name)
                    self.note("Warning", f"service {spec.name}: not implemented yet, "
                                         "not started")
                continue
            except registry.ImplementationError as e:
                # A broken implementation stops that service only; the others still serve.
                self.note("Error", f"service({spec.name}): {e} - not started")
                continue
            if impl.kind == "exec":
                path = impl.target
                full = os.path.join(spec.chroot, path.lstrip("/")) if (
                    spec.chroot and self.as_root) else path
                if not os.access(full, os.X_OK):
                    err = errno.ENOENT if not os.path.exists(full) else errno.EACCES
                    raise SettingsError(f"service({spec.name}): access({full}, X_OK) failed: "
                                        f"{os.strerror(err)}")
            if impl.target == registry.BUILTIN["script"]:
                prog = program_args(list(spec.executable))
                if not prog or not os.access(prog[0], os.X_OK):
                    raise SettingsError(f"service({spec.name}): executable = "
                                        f"{' '.join(spec.executable)}: program not executable")
            creds = settings.credentials(spec) if self.as_root else None
            if spec.chroot and self.as_root and not os.path.isdir(spec.chroot):
                raise SettingsError(f"service({spec.name}): chroot directory "
                                    f"{spec.chroot} does not exist")
            prepared: dict[str, Any] = {}
            if impl.prepare is not None:
                try:
                    prepared = impl.prepare(cfg)
                except Exception as e:  # a bad certificate is a config error, as in Dovecot
                    raise SettingsError(f"service({spec.name}): {e}") from e
            planned.append((spec, impl, creds, sections.get(spec.name), prepared))
        all_listeners = [lst for spec, *_ in planned for lst in spec.listeners]
        for lst in all_listeners:  # socket dirs below base_dir ("login/", "token-login/", ...)
            parent = os.path.dirname(lst.path)
            if lst.kind != "inet" and parent.startswith(ms.base_dir + "/"):
                os.makedirs(parent, 0o755, exist_ok=True)
        self.pending = self.listeners.prepare(all_listeners)
        return planned

    def _log_pipe(self, name: str) -> int:
        pair = self.log_pipes.get(name)
        if pair is None:
            r, w = os.pipe()
            os.set_inheritable(r, False)
            os.set_inheritable(w, False)
            pair = (r, w)
            self.log_pipes[name] = pair
            if self.log_ctl is not None:
                self._log_ctl_send(f"ADD\t{service_prefix(name)}", [r])
        return pair[1]

    def _log_ctl_send(self, text: str, fds: list[int] | None = None) -> None:
        if self.log_ctl is None:
            return
        try:
            if fds:
                socket.send_fds(self.log_ctl, [text.encode() + b"\n"], fds)
            else:
                self.log_ctl.sendall(text.encode() + b"\n")
        except OSError:
            pass

    def _install(self, planned: list[Planned]) -> None:
        """Make the planned services current (first start or a successful reload)."""
        for svc in self.services.values():
            self._unwatch_listeners(svc)  # before commit closes (and frees the fds of) old ones
        self.listeners.commit(self.pending)
        self.generation += 1
        old = self.services
        self.services = {}
        for spec, impl, creds, section, prepared in planned:
            bound = [self.listeners.bound[lst.key()] for lst in spec.listeners]
            prev = old.pop(spec.name, None)
            if prev is not None and spec.name in SPECIAL_KEEP:
                self._unwatch_listeners(prev)
                prev.spec, prev.bound, prev.credentials = spec, bound, creds
                prev.settings_section, prev.prepared = section, prepared
                self.services[spec.name] = prev
                continue
            svc = Service(spec=spec, impl=impl, bound=bound, generation=self.generation,
                          credentials=creds, log_fd=self._log_pipe(spec.name),
                          settings_section=section, prepared=prepared)
            svc.status_r, svc.status_w = os.pipe()
            os.set_blocking(svc.status_r, False)
            os.set_inheritable(svc.status_r, False)
            os.set_inheritable(svc.status_w, False)
            self.sel.register(svc.status_r, selectors.EVENT_READ, ("status", svc))
            self.services[spec.name] = svc
            if prev is not None:
                self._retire(prev)
        for prev in old.values():
            self._retire(prev)

    def _retire(self, svc: Service) -> None:
        self._unwatch_listeners(svc)
        svc.retired = True
        svc.drop_at = None
        for p in svc.processes.values():
            if not p.stopping:
                p.stopping = True
                # SIGQUIT = "stop accepting, finish your clients" is part of the contract; an
                # exec'd program that never spoke the status protocol doesn't know it: TERM.
                quit_ok = svc.impl.kind == "python" or p.initialized
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGQUIT if quit_ok else signal.SIGTERM)
        if svc.processes:
            self.retired.append(svc)
        else:
            self._close_service(svc)

    def _close_service(self, svc: Service) -> None:
        if svc.status_r >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(svc.status_r)
            os.close(svc.status_r)
            os.close(svc.status_w)
            svc.status_r = svc.status_w = -1

    def _bind_control(self) -> None:
        assert self.ms is not None
        path = os.path.join(self.ms.base_dir, "master")
        if self.control_sock is not None:
            return
        spec = ListenerSpec(kind="unix", name="master", path=path, mode=0o600)
        try:
            b = listeners.bind(spec, self.as_root)
        except listeners.ListenerError as e:
            raise StartupError(str(e)) from None
        assert b.sock is not None
        self.control_sock = b.sock
        self.control_path = path
        os.set_inheritable(b.fd, False)

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Write the pid file, start services and loop until stopped. Returns the exit code."""
        assert self.ms is not None
        self.pid_path = daemon.write_pid_file(self.ms.base_dir)
        self.death_r, self.death_w = os.pipe()
        os.set_inheritable(self.death_r, False)
        os.set_inheritable(self.death_w, False)
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(self.sig_w, False)
        signal.set_wakeup_fd(self.sig_w, warn_on_full_buffer=False)
        for sig in MASTER_SIGNALS:
            signal.signal(sig, lambda _s, _f: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(self.sig_r, selectors.EVENT_READ, ("signal", None))
        assert self.control_sock is not None
        self.sel.register(self.control_sock, selectors.EVENT_READ, ("control", None))
        protocols = ", ".join(self.ms.protocol_order) or "none"
        self.log("Info", f"cote v{VERSION} starting up for {protocols}")
        self.running = True
        for w in getattr(self.cfg, "warnings", []) or []:
            self.log("Warning", str(w))
        for level, text in self.startup_notes:
            self.log(level, text)
        self.startup_notes = []
        gc.collect()
        self.last_collect = time.monotonic()
        self._start_log_service()
        for svc in self.services.values():
            if svc.spec.type == "startup" and not svc.processes:
                self.spawn(svc)  # type = startup: one process at start-up
        self._maintain()
        daemon.sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=cote running")
        try:
            self._loop()
        finally:
            self._cleanup()
        return 0

    def _loop(self) -> None:
        while not self.stop_requested:
            timeout = self._next_timeout()
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                continue
            for key, _mask in events:
                try:
                    self._dispatch(*key.data)
                except Exception as e:  # the master must outlive its own bugs
                    self.log("Error", f"internal error: {type(e).__name__}: {e} "
                                      f"({_where(e)})")
                if self._stopping():
                    break
            try:
                self._timers()
                if not self.stop_requested:
                    self._maintain()
            except Exception as e:
                self.log("Error", f"internal error: {type(e).__name__}: {e} ({_where(e)})")
        self._shutdown()

    def _dispatch(self, kind: str, obj: Any) -> None:
        if kind == "signal":
            self._handle_signals()
        elif kind == "status":
            self._read_status(obj)
        elif kind == "listener":
            self._listener_ready(obj)
        elif kind == "control":
            self._accept_control()
        elif kind == "ctlconn":
            self._control_input(obj)

    def _stopping(self) -> bool:
        return self.stop_requested

    def _next_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + 1.0]  # idle_kill bookkeeping resolution
        for svc in self.services.values():
            if svc.throttle_until > now:
                deadlines.append(svc.throttle_until)
            if svc.drop_at is not None:
                deadlines.append(svc.drop_at)
        return max(0.0, min(deadlines) - now)

    # -- signals -----------------------------------------------------------------------------
    def _handle_signals(self) -> None:
        try:
            data = os.read(self.sig_r, 512)
        except BlockingIOError:
            return
        seen: list[int] = []
        for b in data:
            if b not in seen:
                seen.append(b)
        for sig in seen:
            if sig == signal.SIGCHLD:
                self._reap()
            elif sig == signal.SIGHUP:
                self.log("Warning", "SIGHUP received - reloading configuration")
                self.reload()
            elif sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.log("Warning", f"Killed with signal {sig}")
                self.stop_requested = True
            elif sig == signal.SIGUSR1:
                self.reopen_logs()

    def reopen_logs(self) -> None:
        self.sink.reopen()
        self._log_ctl_send("REOPEN")

    # -- reload ------------------------------------------------------------------------------
    def reload(self) -> str | None:
        """Re-read the config; on error log it, keep the old one and return the error text."""
        daemon.sd_notify("RELOADING=1")
        try:
            cfg, ms = self.load()
            assert self.ms is not None
            if ms.base_dir != self.ms.base_dir:
                raise SettingsError("base_dir can't be changed with a reload")
            planned = self._plan_services(ms, cfg)
        except Exception as e:  # ConfigError from cote.config, SettingsError, ListenerError
            text = str(e) or type(e).__name__
            self.log("Error", f"Error in configuration file {self.config_path}: {text}"
                     if "configuration file" not in text else text)
            self.log("Warning", "Configuration not reloaded, old configuration kept")
            daemon.sd_notify("READY=1")
            return text
        old_targets = LogTargets.from_settings(self.ms)
        self.cfg, self.ms = cfg, ms
        new_targets = LogTargets.from_settings(ms)
        if new_targets != old_targets:
            self.sink.close()
            self.sink = LogSink(new_targets)
            self._log_ctl_send("TARGETS\t" + json.dumps(new_targets.__dict__))
        self._install(planned)
        for w in getattr(cfg, "warnings", []) or []:
            self.log("Warning", str(w))
        daemon.sd_notify("READY=1")
        return None

    # -- forking -----------------------------------------------------------------------------
    def _startable(self, svc: Service, now: float) -> bool:
        return (not svc.retired and not self.shutting_down and svc.throttle_until <= now
                and svc.process_count() < svc.spec.process_limit)

    def _maintain(self) -> None:
        """Prefork to process_min_avail and (un)watch listeners as availability says."""
        now = time.monotonic()
        for svc in list(self.services.values()):
            if svc.spec.type == "log" or svc.name == "log":
                if not svc.processes and svc.throttle_until <= now:
                    self._start_log_service()
                continue
            started = 0
            while (svc.process_avail() < svc.min_avail() and started < PREFORK_MAX_AT_ONCE
                   and self._startable(svc, now)):
                if self.spawn(svc) is None:
                    break
                started += 1
            self._update_listening(svc, now)

    def _update_listening(self, svc: Service, now: float) -> None:
        want = (not svc.retired and not self.shutting_down and svc.throttle_until <= now
                and svc.drop_at is None and svc.process_avail() == 0 and bool(svc.bound))
        if want and not svc.listening:
            for b in svc.bound:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.register(b.fd, selectors.EVENT_READ, ("listener", svc))
            svc.listening = True
        elif not want and svc.listening:
            self._unwatch_listeners(svc)

    def _unwatch_listeners(self, svc: Service) -> None:
        if svc.listening:
            for b in svc.bound:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(b.fd)
            svc.listening = False

    def _listener_ready(self, svc: Service) -> None:
        now = time.monotonic()
        if svc.process_avail() > 0:
            self._unwatch_listeners(svc)
            return
        if svc.throttle_until > now:
            self._unwatch_listeners(svc)
            return
        if svc.process_count() >= svc.spec.process_limit:
            self._limit_reached(svc, now)
            return
        if self.spawn(svc) is not None:
            self._unwatch_listeners(svc)

    def _limit_reached(self, svc: Service, now: float) -> None:
        if svc.last_drop_warning + DROP_WARN_INTERVAL_SECS <= now:
            svc.last_drop_warning = now
            if svc.spec.process_limit > 1:
                what, limit = "process_limit", svc.spec.process_limit
            else:
                what, limit = "client_limit", svc.spec.client_limit
            self.log("Warning", f"service({svc.name}): {what} ({limit}) reached, "
                                "client connections are being dropped")
        if svc.spec.type == "login":
            # Dovecot's "all processes full" notification: login processes make room by
            # disconnecting their oldest client that has not logged in yet.
            for p in svc.processes.values():
                if not p.stopping:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, SIGNAL_ALL_FULL)
        self._unwatch_listeners(svc)
        svc.drop_at = now + DROP_TIMEOUT_SECS

    def _drop_pending(self, svc: Service) -> None:
        """Queue timeout expired with every process still full: close waiting connections."""
        svc.drop_at = None
        for b in svc.bound:
            if b.sock is None:
                continue
            # The socket's file description (and its O_NONBLOCK flag) is shared with the
            # service's processes: asyncio ones set it, blocking ones expect it clear. Make it
            # non-blocking for this short drain only, then put back exactly what was there.
            flags = fcntl.fcntl(b.fd, fcntl.F_GETFL)
            fcntl.fcntl(b.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            try:
                while True:
                    try:
                        conn, _ = b.sock.accept()  # EAGAIN -> BlockingIOError: drained
                    except OSError:
                        break
                    conn.close()
            finally:
                fcntl.fcntl(b.fd, fcntl.F_SETFL, flags)

    def spawn(self, svc: Service) -> Process | None:
        assert self.ms is not None
        handles = [b.handle() for b in svc.bound]
        keep: list[int] = []
        extra: dict[str, Any] = dict(svc.prepared)
        plan = ChildPlan(
            spec=svc.spec, impl=svc.impl, title=f"{self.title_base}/{svc.name}",
            listeners=handles, status_fd=svc.status_w, death_fd=self.death_r,
            log_fd=svc.log_fd, generation=svc.generation, config=self.cfg,
            settings=svc.settings_section, credentials=svc.credentials,
            base_dir=self.ms.base_dir, config_path=self.config_path, as_root=self.as_root,
            keep_fds=keep, extra=extra, environment=self.ms.environment)
        if svc.impl.kind == "python" and svc.name not in SPECIAL_KEEP:
            plan.anvil = self._anvil_connection()
        try:
            return self._fork(svc, plan)
        finally:
            if plan.anvil is not None:
                plan.anvil.close()

    def _anvil_connection(self) -> socket.socket | None:
        """A connection to anvil for a child (made here: the child may be unprivileged and
        anvil's socket is 0600 root). Registrations die with it when the child dies."""
        anvil = self.services.get("anvil")
        path = next((b.spec.path for b in anvil.bound if b.spec.name == "anvil"), None) \
            if anvil is not None else None
        if path is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            return None
        sock.setblocking(True)
        return sock

    def _fork(self, svc: Service, plan: ChildPlan) -> Process | None:
        # Frozen objects are never scanned again, in the child (whose pages then stay shared)
        # or here; collect first now and then so garbage is not frozen forever.
        if time.monotonic() - self.last_collect > GC_COLLECT_INTERVAL_SECS:
            gc.unfreeze()
            gc.collect()
            self.last_collect = time.monotonic()
        gc.freeze()
        # Signals stay blocked across fork() so that a signal reaching the new child before it
        # has reset its handlers cannot run the master's handler (which would write into the
        # master's wake-up pipe); the child unblocks after resetting them.
        old_mask = _sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as e:
            _sigmask(signal.SIG_SETMASK, old_mask)
            self.log("Error", f"service({svc.name}): fork() failed: {e.strerror}")
            self._throttle(svc)
            return None
        if pid == 0:
            run_child(plan)  # never returns
            os._exit(89)
        _sigmask(signal.SIG_SETMASK, old_mask)
        now = time.monotonic()
        uid = plan.credentials.uid if plan.credentials else os.getuid()
        proc = Process(pid=pid, service=svc, generation=svc.generation,
                       available=svc.spec.client_limit, started=now, idle_since=now, uid=uid)
        svc.processes[pid] = proc
        return proc

    def _start_log_service(self) -> None:
        svc = self.services.get("log")
        if svc is None or svc.processes or self.shutting_down:
            return
        assert self.ms is not None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(parent.fileno(), False)
        if self.log_ctl is not None:
            self.log_ctl.close()
        self.log_ctl = parent
        pipes = [(r, service_prefix(name)) for name, (r, _w) in self.log_pipes.items()]
        plan = ChildPlan(
            spec=svc.spec, impl=svc.impl, title=f"{self.title_base}/log",
            listeners=[b.handle() for b in svc.bound], status_fd=svc.status_w,
            death_fd=self.death_r, log_fd=svc.log_fd, generation=svc.generation,
            config=self.cfg, settings=svc.settings_section, credentials=svc.credentials,
            base_dir=self.ms.base_dir, config_path=self.config_path, as_root=self.as_root,
            keep_fds=[r for r, _p in pipes] + [child.fileno()],
            extra={"log_targets": LogTargets.from_settings(self.ms), "log_control": child,
                   "log_pipes": pipes})
        self._fork(svc, plan)
        child.close()

    # -- status and reaping ------------------------------------------------------------------
    def _read_status(self, svc: Service) -> None:
        try:
            data = os.read(svc.status_r, 65536)
        except BlockingIOError:
            return
        svc.status_buf += data
        now = time.monotonic()
        for pid, gen, available in unpack_statuses(svc.status_buf):
            proc = svc.processes.get(pid)
            if proc is None or gen != proc.generation:
                continue
            if not proc.initialized:
                proc.initialized = True
                svc.throttle_secs = 0.0
            was_idle = proc.available >= svc.spec.client_limit
            proc.available = available
            if available >= svc.spec.client_limit and not was_idle:
                proc.idle_since = now
                proc.idle_kill_sent = False
        if svc.process_avail() > 0:
            svc.drop_at = None
        self._update_listening(svc, now)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._process_exited(pid, status)

    def _find(self, pid: int) -> Process | None:
        for svc in [*self.services.values(), *self.retired]:
            proc = svc.processes.get(pid)
            if proc is not None:
                return proc
        return None

    def _process_exited(self, pid: int, status: int) -> None:
        proc = self._find(pid)
        if proc is None:
            return
        svc = proc.service
        if not proc.initialized and svc.status_r >= 0:
            # A quick child (one short session) can report and exit before the master reads
            # its report: read it now, or a healthy process looks like a failed start.
            self._read_status(svc)
        del svc.processes[pid]
        if svc.drop_at is not None and svc.process_count() < svc.spec.process_limit:
            svc.drop_at = None  # a process slot is free: waiting connections get a process
        text = exit_text(svc.spec, status)
        now = time.monotonic()
        if text is not None and not (proc.stopping and self._expected(status)):
            if proc.initialized or svc.retired:
                self.log("Error", f"service({svc.name}): child {pid} {text}")
            else:
                self.sink.write("Fatal", service_prefix(svc.name),
                                f"master: service({svc.name}): child {pid} {text}")
        failed_start = (not proc.initialized and not proc.stopping and not self.shutting_down
                        and (text is not None or now - proc.started < 1.0))
        crash_loop = False
        if text is not None and not proc.stopping:
            second = int(now)
            if second == svc.exit_failure_second:
                svc.exit_failures_in_sec += 1
            else:
                svc.exit_failure_second, svc.exit_failures_in_sec = second, 1
            crash_loop = svc.exit_failures_in_sec > MAX_EXIT_FAILURES_IN_SEC
        if (failed_start or crash_loop) and not svc.retired and not self.shutting_down:
            self._throttle(svc)
        if svc.retired and not svc.processes:
            with contextlib.suppress(ValueError):
                self.retired.remove(svc)
            self._close_service(svc)

    @staticmethod
    def _expected(status: int) -> bool:
        return os.WIFSIGNALED(status) and os.WTERMSIG(status) in (
            signal.SIGTERM, signal.SIGKILL, signal.SIGQUIT, signal.SIGINT)

    def _throttle(self, svc: Service) -> None:
        secs = THROTTLE_MIN_SECS if svc.throttle_secs == 0 else min(THROTTLE_MAX_SECS,
                                                                     svc.throttle_secs * 2)
        svc.throttle_secs = secs
        svc.throttle_until = time.monotonic() + secs
        self._unwatch_listeners(svc)
        self.log("Error", f"service({svc.name}): command startup failed, throttling for "
                          f"{secs:.3f} secs")

    # -- timers ------------------------------------------------------------------------------
    def _timers(self) -> None:
        now = time.monotonic()
        for svc in list(self.services.values()):
            if svc.drop_at is not None and svc.drop_at <= now:
                if svc.process_avail() == 0:
                    self._drop_pending(svc)
                svc.drop_at = None
            self._idle_kill(svc, now)

    def _idle_kill(self, svc: Service, now: float) -> None:
        if not svc.spec.idle_kill:
            return
        idle = sorted((p for p in svc.processes.values()
                       if not p.stopping and p.initialized
                       and p.available >= svc.spec.client_limit),
                      key=lambda p: p.idle_since)
        surplus = len(idle) - svc.min_avail()
        for p in idle:
            if surplus <= 0:
                break
            if not p.idle_kill_sent and now - p.idle_since >= svc.spec.idle_kill:
                p.idle_kill_sent = True
                surplus -= 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)

    # -- control socket ----------------------------------------------------------------------
    def _accept_control(self) -> None:
        assert self.control_sock is not None
        try:
            conn, _ = self.control_sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.control_conns[conn.fileno()] = (conn, bytearray())
        self.sel.register(conn, selectors.EVENT_READ, ("ctlconn", conn))

    def _close_control_conn(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        self.control_conns.pop(conn.fileno(), None)
        conn.close()

    def _control_input(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(control.MAX_LINE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        entry = self.control_conns.get(conn.fileno())
        if not data or entry is None:
            self._close_control_conn(conn)
            return
        buf = entry[1]
        buf += data
        if len(buf) > control.MAX_LINE:
            self._close_control_conn(conn)
            return
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                reply = self._control_command(control.decode(line))
            except ValueError as e:
                reply = {"ok": False, "error": f"bad request: {e}"}
            try:
                conn.setblocking(True)
                conn.settimeout(2)
                conn.sendall(control.encode(reply))
                conn.setblocking(False)
            except OSError:
                self._close_control_conn(conn)
                return

    def _control_command(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd == "stop":
            self.log("Info", "Stop requested over the control socket, shutting down")
            self.stop_requested = True
            return {"ok": True, "pid": os.getpid()}
        if cmd == "reload":
            self.log("Info", "Reload requested over the control socket - reloading "
                             "configuration")
            error = self.reload()
            return {"ok": True} if error is None else {"ok": False, "error": error}
        if cmd == "service-status":
            return {"ok": True, "services": self.service_status()}
        if cmd == "process-status":
            return {"ok": True, "processes": self.process_status()}
        return {"ok": False, "error": f"unknown command: {cmd}"}

    def service_status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for svc in self.services.values():
            out.append({
                "name": svc.name, "process_count": svc.process_count(),
                "process_avail": svc.process_avail(),
                "process_limit": svc.spec.process_limit, "client_limit": svc.spec.client_limit,
                "process_min_avail": svc.spec.process_min_avail,
                "throttle_secs": round(max(0.0, svc.throttle_until - now), 3),
                "listening": svc.listening,
                "listeners": [describe_listener(b.spec) for b in svc.bound],
                "user": svc.spec.user, "chroot": svc.spec.chroot,
            })
        return out

    def process_status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for svc in [*self.services.values(), *self.retired]:
            for p in svc.processes.values():
                out.append({
                    "service": svc.name, "pid": p.pid, "uid": p.uid,
                    "available_count": p.available, "client_limit": svc.spec.client_limit,
                    "idle_secs": round(now - p.idle_since, 1)
                    if p.available >= svc.spec.client_limit else 0,
                    "age_secs": round(now - p.started, 1), "generation": p.generation,
                    "initialized": p.initialized, "retired": svc.retired,
                })
        return out

    # -- shutdown ----------------------------------------------------------------------------
    def _all_services(self) -> list[Service]:
        return [*self.services.values(), *self.retired]

    def _shutdown(self) -> None:
        self.shutting_down = True
        daemon.sd_notify("STOPPING=1")
        for conn, _ in list(self.control_conns.values()):
            self._close_control_conn(conn)
        assert self.ms is not None
        for svc in self._all_services():
            self._unwatch_listeners(svc)
            svc.drop_at = None
        # everything but the log service first
        for svc in self._all_services():
            if svc.name == "log":
                continue
            leave = not self.ms.shutdown_clients and svc.name in MAIL_SERVICES
            for p in svc.processes.values():
                p.stopping = True
                if leave:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGQUIT)
                else:
                    kill_group(p.pid, signal.SIGTERM)
            if leave:
                svc.processes.clear()
        self._wait_children(lambda s: s.name != "log", MAX_DIE_WAIT_SECS)
        # listeners and sockets go before the log service so nothing new can arrive
        self.listeners.close_all()
        if self.control_sock is not None:
            self.control_sock.close()
            self.control_sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.control_path)
        self.log("Info", "cote shutting down")
        for _r, w in self.log_pipes.values():
            with contextlib.suppress(OSError):
                os.close(w)
        if self.log_ctl is not None:
            self.log_ctl.close()
            self.log_ctl = None
        self._wait_children(lambda s: True, 3.0)

    def _wait_children(self, which: Callable[[Service], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            self._reap()
            left = [p for s in self._all_services() if which(s) for p in s.processes.values()]
            if not left:
                return
            if time.monotonic() >= deadline:
                if killed:
                    return
                for p in left:
                    kill_group(p.pid, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 2.0
            time.sleep(0.02)

    def _cleanup(self) -> None:
        if self.ms is not None:
            daemon.remove_pid_file(self.ms.base_dir)
        with contextlib.suppress(OSError):
            os.close(self.death_w)
        self.sink.close()


def kill_group(pid: int, sig: int) -> None:
    """Signal a child and whatever it started (scripts): each child leads its own group."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _where(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    return f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else "?"


def describe_listener(spec: ListenerSpec) -> str:
    if spec.kind == "inet":
        addr = f"[{spec.address}]" if ":" in spec.address else spec.address
        flags = "".join((" ssl" if spec.ssl else "", " haproxy" if spec.haproxy else ""))
        return f"{spec.name} {addr}:{spec.port}{flags}"
    return f"{spec.name} {spec.kind}:{spec.path} mode={spec.mode:04o}"


def exit_text(spec: ServiceSpec, status: int) -> str | None:
    """Dovecot's wording for a child's abnormal exit, None for a clean one."""
    if os.WIFSIGNALED(status):
        return f"killed with signal {os.WTERMSIG(status)}"
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    if code == 83:
        mb = spec.vsz_limit // (1024 * 1024)
        return (f"returned error 83 (Out of memory (service {spec.name} {{ vsz_limit={mb} MB }}, "
                "you may need to increase it) - set CORE_OUTOFMEM=1 environment to get core "
                "dump)")
    if code == 84:
        return "returned error 84 (exec() failed)"
    return f"returned error {code}"
