"""Dotlocks as Dovecot makes them, so cote and Dovecot exclude each other.

A lock is ``<file>.lock``, created atomically (``O_CREAT|O_EXCL``, or ``link()`` of a temp
file: Dovecot uses either, both fail when the lock exists). Two kinds exist:

* *marker locks* (``dovecot-uidlist.lock``) hold ``<pid>:<hostname>``; a lock whose process
  is gone on this host is stale at once, any lock is stale when its mtime is older than
  ``stale_timeout`` (120 s); a holder touches it every 10 s while working.
* *content locks* (``dovecot-keywords.lock``, ``subscriptions.lock``): the new file content is
  written into the lock, which is then renamed over the file (``replace``).
"""

from __future__ import annotations

import errno
import os
import socket
import time

from cote.storage.errors import StorageError

HOSTNAME = socket.gethostname()
STALE_TIMEOUT = 120.0
TOUCH_INTERVAL = 10.0


class LockTimeout(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"Timeout while waiting for lock {path}", code="INUSE")


def _read_local_pid(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            data = f.read(512)
    except OSError:
        return None
    pid_s, sep, host = data.decode("ascii", "replace").partition(":")
    if not sep or host.strip() != HOSTNAME or not pid_s.isdigit():
        return None
    return int(pid_s)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


class Dotlock:
    """``with Dotlock(path_of_file):`` holds ``path_of_file + ".lock"``."""

    def __init__(self, target: str, *, timeout: float = STALE_TIMEOUT + 2,
                 stale_timeout: float = STALE_TIMEOUT, mode: int = 0o666) -> None:
        self.target = target
        self.path = target + ".lock"
        self.timeout = timeout
        self.stale_timeout = stale_timeout
        self.mode = mode
        self.fd = -1
        self._ino = 0
        self._touched = 0.0

    # -- acquire ------------------------------------------------------------------------
    def _try_create(self, content: bytes, marker: bool) -> bool:
        if not marker:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, self.mode)
            except FileExistsError:
                return False
            os.write(fd, content)
        else:
            # a marker lock is born with its "<pid>:<host>" (temp file + link, Dovecot's other
            # dotlock method): a process killed while locking never leaves an empty lock,
            # which would only go stale after two minutes
            tmp = f"{self.path}.{HOSTNAME}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, self.mode)
            try:
                os.write(fd, content)
                os.link(tmp, self.path)
            except FileExistsError:
                os.close(fd)
                return False
            finally:
                os.unlink(tmp)
        self.fd = fd
        self._ino = os.fstat(fd).st_ino
        self._touched = time.monotonic()
        return True

    def _remove_if_stale(self, check_pid: bool) -> bool:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return True
        stale = False
        if check_pid:
            pid = _read_local_pid(self.path)
            # a lock of a process that died on this host is stale at once (our own pid is
            # alive: we never steal a lock from ourselves)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                stale = True
        now = time.time()
        if not stale and now - st.st_mtime > self.stale_timeout:
            stale = True
        if not stale:
            return False
        try:
            st2 = os.lstat(self.path)
            if st2.st_ino == st.st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        return True

    def acquire(self, *, content: bytes | None = None, nonblock: bool = False) -> None:
        """Create the lock; ``content`` None writes ``<pid>:<host>`` (a marker lock)."""
        marker = content is None
        data = f"{os.getpid()}:{HOSTNAME}".encode() if content is None else content
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while not self._try_create(data, marker):
            if self._remove_if_stale(check_pid=True):
                continue
            if nonblock or time.monotonic() >= deadline:
                raise LockTimeout(self.path)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def touch(self) -> None:
        """Keep a long-held lock fresh (at most every 10 s), as Dovecot's holders do."""
        now = time.monotonic()
        if self.fd >= 0 and now - self._touched >= TOUCH_INTERVAL:
            os.utime(self.path)
            self._touched = now

    def release(self) -> None:
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        try:
            if os.lstat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Dotlock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def replace_file(target: str, content: bytes, *, mode: int = 0o600, fsync: bool = True,
                 steal: bool = False, stale_timeout: float = 30.0,
                 nonblock: bool = False) -> None:
    """Write ``content`` through ``target.lock`` and rename it over ``target``.

    ``nonblock`` raises :class:`LockTimeout` at once when another process holds the lock.
    ``steal`` removes an existing lock first: right when the caller holds the lock that
    guards every writer of this file (the uidlist lock guards ``dovecot-keywords``).
    """
    lock = Dotlock(target, stale_timeout=stale_timeout, mode=mode)
    if steal:
        try:
            os.unlink(lock.path)
        except FileNotFoundError:
            pass
    lock.acquire(content=content, nonblock=nonblock)
    try:
        os.fchmod(lock.fd, mode)  # exactly ``mode``: the umask must not narrow a shared store
        try:
            old_mtime = os.stat(target).st_mtime
        except FileNotFoundError:
            old_mtime = 0.0
        now = time.time()
        if int(old_mtime) >= int(now):
            # the same second as the old file: bump mtime so mtime watchers see the change
            os.utime(lock.fd, (now, float(int(old_mtime) + 1)))
        if fsync:
            os.fsync(lock.fd)
        os.rename(lock.path, target)
    except BaseException:
        lock.release()
        raise
    os.close(lock.fd)
    lock.fd = -1
