"""What happens in a freshly forked service process, up to calling the service's entry point.

Order matters and mirrors Dovecot's: own process group, default signal dispositions, stdio onto
the service's log pipe, close every fd the process should not hold, RLIMIT_AS (``vsz_limit``),
chroot, then setgroups/setgid/setuid, title, and only then the service code (already imported
by the master before the fork). Nothing here may return to the master's loop: every path ends
in ``os._exit``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import resource
import signal
import socket
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from cote.ipc import (
    ENV_CLIENT_LIMIT,
    ENV_CONFIG,
    ENV_DEATH_FD,
    ENV_GENERATION,
    ENV_LISTENERS,
    ENV_SERVICE,
    ENV_SERVICE_COUNT,
    ENV_STATUS_FD,
    EXIT_EXEC_FAILED,
    EXIT_FATAL,
    EXIT_OUT_OF_MEMORY,
    ListenerSocket,
    ServiceContext,
    StatusReporter,
    format_listener_env,
)
from cote.log import Logger, encode_record, setup_child_logging
from cote.master.registry import Implementation
from cote.master.settings import Credentials, ServiceSpec

try:
    import setproctitle as _spt
except ImportError:  # pragma: no cover - dependency declared in pyproject
    _spt = None  # type: ignore[assignment]

HIGH_FD_BASE = 200


@dataclass
class ChildPlan:
    """Everything the child needs, prepared by the master before fork."""

    spec: ServiceSpec
    impl: Implementation
    title: str
    listeners: list[ListenerSocket]
    status_fd: int
    death_fd: int
    log_fd: int
    generation: int
    config: Any
    settings: Any
    credentials: Credentials | None
    base_dir: str
    config_path: str
    as_root: bool
    keep_fds: list[int] = field(default_factory=list)  # service-specific extra fds
    environment: dict[str, str] = field(default_factory=dict)
    anvil: socket.socket | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def set_title(title: str) -> None:
    if _spt is not None:
        _spt.setproctitle(title)


def _close_other_fds(keep: set[int]) -> None:
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _fatal(log_fd: int, prefix: str, text: str, code: int) -> None:
    try:
        os.write(log_fd, encode_record("F", prefix, text))
    except OSError:
        pass
    os._exit(code)


def _drop_privileges(plan: ChildPlan) -> None:
    if plan.as_root and plan.spec.chroot:
        os.chroot(plan.spec.chroot)
        os.chdir("/")
    creds = plan.credentials
    if creds is not None and plan.as_root:
        os.setgroups(list(creds.groups))
        os.setgid(creds.gid)
        os.setuid(creds.uid)


def run_child(plan: ChildPlan) -> None:
    """Called right after fork() in the child. Never returns."""
    prefix = f"{plan.spec.name}: "
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1,
                    signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # "all full": harmless unless handled
        signal.pthread_sigmask(signal.SIG_SETMASK, [])  # blocked by the master around fork
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(plan.log_fd, 1)
        os.dup2(plan.log_fd, 2)
        keep = {lst.fd for lst in plan.listeners} | {plan.status_fd, plan.death_fd}
        keep |= set(plan.keep_fds)
        if plan.anvil is not None:
            keep.add(plan.anvil.fileno())
        _close_other_fds(keep)
        if plan.spec.vsz_limit:
            limit = plan.spec.vsz_limit
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if plan.impl.kind == "exec":
            _exec_child(plan, prefix)
        _drop_privileges(plan)
        set_title(plan.title)
        logger = setup_child_logging(prefix)
        gc.enable()
    except MemoryError:
        _fatal(2, prefix, "Out of memory while starting", EXIT_OUT_OF_MEMORY)
    except BaseException as e:
        _fatal(2, prefix, f"service({plan.spec.name}): process setup failed: "
               f"{type(e).__name__}: {e}", EXIT_FATAL)
    code = _call_entry_point(plan, logger)
    os._exit(code)


def _call_entry_point(plan: ChildPlan, logger: Logger) -> int:
    status = StatusReporter(plan.status_fd, plan.generation, plan.spec.client_limit)
    ctx = ServiceContext(
        name=plan.spec.name, config=plan.config, settings=plan.settings,
        listeners=plan.listeners, status=status, master_death_fd=plan.death_fd, log=logger,
        client_limit=plan.spec.client_limit, service_count=plan.spec.service_count,
        idle_kill=plan.spec.idle_kill, executable=list(plan.spec.executable),
        base_dir=plan.base_dir, generation=plan.generation,
        extra={**plan.extra, "environment": plan.environment}, title=plan.title,
        anvil=plan.anvil)
    ctx.install_default_signals()
    # First status report: the process is initialized (the master stops "startup failed"
    # throttling once it sees this).
    status.report(ctx.available())
    assert plan.impl.func is not None
    try:
        result = plan.impl.func(ctx)
        code = int(result or 0)
    except MemoryError:
        logger.fatal(f"Out of memory (service {plan.spec.name} {{ vsz_limit="
                     f"{plan.spec.vsz_limit // (1024 * 1024)} MB }}, you may need to increase it)")
        code = EXIT_OUT_OF_MEMORY
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        try:
            lines = traceback.format_exception(e)
            logger.fatal(f"{type(e).__name__}: {e}")
            for line in "".join(lines).splitlines():
                logger.error(line)
        except MemoryError:
            code = EXIT_OUT_OF_MEMORY
        else:
            code = EXIT_FATAL
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _exec_child(plan: ChildPlan, prefix: str) -> None:
    """Plain ``executable = /path/prog``: listeners from fd 3 (systemd LISTEN_FDS style)."""
    n = len(plan.listeners)
    sources = [lst.fd for lst in plan.listeners] + [plan.status_fd, plan.death_fd]
    # first out of the way (the lowest free fds >= HIGH_FD_BASE), then into place from 3
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD_BASE) for fd in sources]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
    _close_other_fds(set(range(3, 3 + len(high))))
    env = dict(plan.environment)
    env.update({
        "LISTEN_FDS": str(n),
        "LISTEN_FDNAMES": ":".join(lst.name.replace(":", "_") for lst in plan.listeners),
        ENV_LISTENERS: format_listener_env(plan.listeners),
        ENV_STATUS_FD: str(3 + n), ENV_DEATH_FD: str(4 + n),
        ENV_SERVICE: plan.spec.name, ENV_CONFIG: plan.config_path,
        ENV_CLIENT_LIMIT: str(plan.spec.client_limit),
        ENV_SERVICE_COUNT: str(plan.spec.service_count),
        ENV_GENERATION: str(plan.generation),
    })
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        _drop_privileges(plan)
    except OSError as e:
        _fatal(2, prefix, f"service({plan.spec.name}): privileges: {e}", EXIT_FATAL)
    env["LISTEN_PID"] = str(os.getpid())
    args = list(plan.spec.executable)
    try:
        os.execve(args[0], args, env)  # noqa: S606 - the admin-configured program
    except OSError as e:
        _fatal(2, prefix, f"execv({args[0]}) failed: {e.strerror}", EXIT_EXEC_FAILED)

