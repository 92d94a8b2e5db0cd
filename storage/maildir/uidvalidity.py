"""``dovecot-uidvalidity``: the next UIDVALIDITY for a new mailbox, shared per mail root.

The file holds 8 lowercase hex digits of the last value handed out; an empty 0444 marker file
``dovecot-uidvalidity.<hex>`` beside it is renamed to the next value, which makes taking a
value atomic between processes. The first value is the current time.
"""

from __future__ import annotations

import os
import time

NAME = "dovecot-uidvalidity"
_RETRIES = 100


def _write(path: str, value: int, mode: int) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)  # a new file gets ``mode`` exactly, whatever the umask
    except FileExistsError:
        fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, f"{value:08x}".encode(), 0)
    finally:
        os.close(fd)


def _rename_marker(path: str, value: int) -> int | None:
    """Rename the marker ``value`` -> ``value+1``; returns the value taken (+1) or None."""
    for _ in range(_RETRIES):
        try:
            os.rename(f"{path}.{value:08x}", f"{path}.{value + 1:08x}")
            return value + 1
        except FileNotFoundError:
            value += 1  # someone else took it: try the next one
    return None


def _rescan(root: str, path: str, mode: int) -> int:
    prefix = NAME + "."
    best = 0
    try:
        with os.scandir(root) as it:
            for entry in it:
                if entry.name.startswith(prefix):
                    try:
                        best = max(best, int(entry.name[len(prefix):], 16))
                    except ValueError:
                        pass
    except FileNotFoundError:
        os.makedirs(root, mode=0o700, exist_ok=True)
    if best == 0:
        now = int(time.time())
        try:
            os.close(os.open(f"{path}.{now:08x}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444))
        except FileExistsError:
            return _rescan(root, path, mode)
        _write(path, now, mode)
        return now
    taken = _rename_marker(path, best)
    if taken is None:
        return int(time.time())
    _write(path, taken, mode)
    return taken


def next_uidvalidity(root: str, mode: int = 0o600) -> int:
    """Take the next UIDVALIDITY from ``root/dovecot-uidvalidity`` (Dovecot's algorithm);
    ``mode``: the file's permissions if it is created (Dovecot: the root's, without x)."""
    path = os.path.join(root, NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
        value = int(raw.decode("ascii"), 16) if raw else 0
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        value = 0
    if value == 0:
        return _rescan(root, path, mode)
    taken = _rename_marker(path, value)
    if taken is None:
        return _rescan(root, path, mode)
    _write(path, taken, mode)
    return taken
