"""Process-level chores of the master: pid file, base_dir layout, daemonising, sd_notify.

The base_dir layout copies what Dovecot 2.3 creates (observed with ``ls -la`` on the oracle):
``base_dir`` 0755 root, ``login/`` and ``token-login/`` 0750 root:<login user's group>,
``empty/`` 0755 root (anvil's chroot), ``master.pid`` 0600, ``dovecot.conf`` -> config path.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket

PID_FILE = "master.pid"


class AlreadyRunning(Exception):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def check_pid_file(base_dir: str) -> None:
    """Refuse to start when a live master owns the pid file; a stale one is fine."""
    path = os.path.join(base_dir, PID_FILE)
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and _alive(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                who = "Dovecot" if b"dovecot" in f.read().split(b"\0")[0] else "cote"
        except OSError:
            who = "cote"
        raise AlreadyRunning(f"{who} is already running with PID {pid} (read from {path})")


def write_pid_file(base_dir: str) -> str:
    path = os.path.join(base_dir, PID_FILE)
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)
    return path


def remove_pid_file(base_dir: str) -> None:
    path = os.path.join(base_dir, PID_FILE)
    if read_pid(path) == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(path)


def _mkdir(path: str, mode: int, uid: int, gid: int, as_root: bool) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    os.chmod(path, mode)
    if as_root:
        os.chown(path, uid, gid)


def make_base_dirs(base_dir: str, login_user: str, config_path: str, as_root: bool) -> None:
    """Create base_dir and the directories Dovecot creates in it (idempotent)."""
    os.makedirs(base_dir, 0o755, exist_ok=True)
    uid = 0 if as_root else os.getuid()
    gid = 0 if as_root else os.getgid()
    os.chmod(base_dir, 0o755)  # noqa: S103 - Dovecot's base_dir mode
    if as_root:
        os.chown(base_dir, 0, 0)
    login_gid = gid
    if as_root:
        try:
            login_gid = pwd.getpwnam(login_user).pw_gid
        except KeyError:
            login_gid = 0
    for name in ("login", "token-login"):
        _mkdir(os.path.join(base_dir, name), 0o750, uid, login_gid, as_root)
    empty = os.path.join(base_dir, "empty")
    _mkdir(empty, 0o755, uid, gid, as_root)
    link = os.path.join(base_dir, "dovecot.conf")
    with contextlib.suppress(OSError):
        if os.path.islink(link) or os.path.exists(link):
            os.unlink(link)
        os.symlink(os.path.abspath(config_path), link)


def daemonize() -> None:
    """Classic double fork; the original process exits 0 once the daemon is detached."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def sd_notify(state: str) -> bool:
    """Send a systemd notification (``READY=1`` ...) if NOTIFY_SOCKET is set. One datagram."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(addr)
        sock.sendall(state.encode())
        return True
    except OSError:
        return False
    finally:
        sock.close()
