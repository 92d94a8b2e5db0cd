"""The polling fallback (used when a uid's inotify instances run out) must make its fileno()
readable on a change: the IMAP IDLE loop only watches the descriptor."""

from __future__ import annotations

import os
import select
from pathlib import Path

from cote.storage.notify import PollingWatcher


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_fileno_becomes_readable_on_a_change_and_drain_rearms(tmp_path: Path) -> None:
    watched = tmp_path / "new"
    watched.mkdir()
    w = PollingWatcher([str(watched)], interval=0.02)
    try:
        fd = w.fileno()
        assert not readable(fd, 0.1)  # nothing changed: no wake-up
        (watched / "msg1").write_bytes(b"x")
        os.utime(watched, ns=(0, 1))  # a changed mtime, whatever the clock's resolution
        assert readable(fd, 2.0)
        w.drain()
        assert not readable(fd, 0.1)  # drained and re-armed, no change since
        os.utime(watched, ns=(0, 2))
        assert readable(fd, 2.0)
    finally:
        w.close()
