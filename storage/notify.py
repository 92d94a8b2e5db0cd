"""Change notification for IDLE: inotify (through ctypes) on a mailbox's directories.

Any process that renames a file into ``new/``/``cur/``, unlinks one, or replaces the uidlist
changes one of the watched directories, so a waiting session wakes without polling. Where
inotify is unavailable a fallback polls the directories' mtimes once a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import threading
import time
from collections.abc import Sequence

from cote.storage.api import ChangeWatcher

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc.inotify_init1.argtypes = [ctypes.c_int]
    _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    _libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
except (OSError, AttributeError):
    _libc = None


def inotify_init() -> int:
    """A new non-blocking inotify descriptor (OSError when there is none to have)."""
    if _libc is None:
        raise OSError("inotify is not available")
    fd: int = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    return fd


def add_watch(fd: int, path: str) -> int:
    """Watch ``path`` (a mailbox directory) on inotify descriptor ``fd``; the watch number.
    The caller's permissions count, so a process may add watches to a descriptor another
    process made and passed to it (imap-hibernate's shared descriptor)."""
    assert _libc is not None
    wd: int = _libc.inotify_add_watch(fd, os.fsencode(path), _MASK)
    if wd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_add_watch {path} failed: {os.strerror(err)}")
    return wd


def rm_watch(fd: int, wd: int) -> None:
    if _libc is not None:
        _libc.inotify_rm_watch(fd, wd)


class InotifyWatcher(ChangeWatcher):
    def __init__(self, dirs: Sequence[str]) -> None:
        self.fd = inotify_init()
        self.dirs = list(dirs)
        try:
            for d in dirs:
                add_watch(self.fd, d)
        except OSError:
            os.close(self.fd)
            raise

    def fileno(self) -> int:
        return int(self.fd)

    def wait(self, timeout: float | None = None) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PollingWatcher(ChangeWatcher):
    """Fallback: compare the directories' mtimes every ``interval`` seconds.

    Used when inotify cannot be had (no libc symbol, or the user's inotify instances are used
    up: ``fs.inotify.max_user_instances`` is 128 per uid, and virtual users share one uid).
    ``wait`` polls in the caller's thread; an event loop that watches ``fileno()`` gets a
    thread that polls and writes to the pipe — without it, IDLE would hear of changes only at
    ``imap_idle_notify_interval``."""

    def __init__(self, dirs: Sequence[str], interval: float = 1.0) -> None:
        self.dirs = list(dirs)
        self.interval = interval
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        self._sig = self._stat()
        self._signalled = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def _stat(self) -> list[int]:
        out = []
        for d in self.dirs:
            try:
                out.append(os.stat(d).st_mtime_ns)
            except FileNotFoundError:
                out.append(0)
        return out

    def fileno(self) -> int:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="mailbox-poll", daemon=True)
            self._thread.start()
        return self.rfd

    def _poll(self) -> None:
        while not self._closed.wait(self.interval):
            if not self._signalled and self._stat() != self._sig:
                self._signalled = True
                try:
                    os.write(self.wfd, b"\0")
                except OSError:
                    return

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sig = self._stat()
            if sig != self._sig:
                self._sig = sig
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.interval)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.rfd, 4096):
                pass
        self._sig = self._stat()
        self._signalled = False

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1)
        for fd in (self.rfd, self.wfd):
            os.close(fd)


def watch(dirs: Sequence[str]) -> ChangeWatcher:
    if _libc is not None:
        try:
            return InotifyWatcher(dirs)
        except OSError:
            pass
    return PollingWatcher(dirs)
