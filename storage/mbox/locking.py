"""mbox locks as Dovecot takes them: ``mbox_read_locks`` / ``mbox_write_locks``.

Methods (file locks first, then the dotlock; released in reverse): ``fcntl`` (POSIX record
lock on the whole file), ``flock``, ``dotlock`` (``<mbox>.lock``, Dovecot's and procmail's
convention), ``dotlock_try`` (a dotlock when the directory lets us create one, else none: for
``/var/mail`` without write access) and ``lockf`` (the same lock as fcntl on Linux). Each waits
up to ``mbox_lock_timeout`` (default 5 min) before ``LockTimeout``.
"""

from __future__ import annotations

import errno
import fcntl
import time
from collections.abc import Sequence

from cote.storage.dotlock import Dotlock, LockTimeout
from cote.storage.errors import StorageError

METHODS = ("fcntl", "flock", "dotlock", "dotlock_try", "lockf")
DEFAULT_READ = ("fcntl",)
DEFAULT_WRITE = ("fcntl", "dotlock")  # Debian Dovecot 2.3.19 doveconf -d
DEFAULT_TIMEOUT = 300.0


def parse_methods(value: str | None, default: Sequence[str]) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    methods = tuple(value.split())
    for m in methods:
        if m not in METHODS:
            raise StorageError(f"mbox: Invalid lock method: {m}", code="SERVERBUG")
    return methods


def _wait_lock(fd: int, kind: str, exclusive: bool, deadline: float, path: str) -> None:
    delay = 0.002
    while True:
        try:
            if kind == "flock":
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            else:
                fcntl.lockf(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise LockTimeout(path)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class MboxLock:
    """``with MboxLock(path, fd, methods, exclusive):`` holds every configured lock."""

    def __init__(self, path: str, fd: int, methods: Sequence[str], *, exclusive: bool,
                 timeout: float = DEFAULT_TIMEOUT, mode: int = 0o600) -> None:
        self.path = path
        self.fd = fd
        self.methods = methods
        self.exclusive = exclusive
        self.timeout = timeout
        self.mode = mode
        self._held: list[tuple[str, Dotlock | None]] = []

    def __enter__(self) -> MboxLock:
        return self.acquire()

    def acquire(self) -> MboxLock:
        deadline = time.monotonic() + self.timeout
        # file locks before the dotlock, whatever the configured order: Dovecot holds its
        # fcntl lock while it creates the dotlock (and Postfix's local delivery locks
        # "fcntl, dotlock"), so taking the dotlock first could deadlock against them
        ordered = [m for m in self.methods if not m.startswith("dotlock")] \
            + [m for m in self.methods if m.startswith("dotlock")]
        try:
            for m in ordered:
                if m in ("dotlock", "dotlock_try"):
                    lock = Dotlock(self.path, timeout=max(deadline - time.monotonic(), 0),
                                   mode=self.mode)
                    try:
                        lock.acquire()
                    except PermissionError:
                        if m == "dotlock_try":
                            continue
                        raise
                    except OSError as e:
                        if m == "dotlock_try" and e.errno in (errno.EACCES, errno.EROFS):
                            continue
                        raise
                    self._held.append((m, lock))
                else:
                    _wait_lock(self.fd, m, self.exclusive, deadline, self.path)
                    self._held.append((m, None))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        while self._held:
            m, lock = self._held.pop()
            if lock is not None:
                lock.release()
            elif m == "flock":
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            else:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def touch(self) -> None:
        for _, lock in self._held:
            if lock is not None:
                lock.touch()
