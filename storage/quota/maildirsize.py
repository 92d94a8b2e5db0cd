"""The Maildir++ ``maildirsize`` file, kept exactly as Dovecot (and Courier) keep it.

Line 1 the limits ``<bytes>S[,<count>C]`` (``0S`` when there are none), line 2 the totals
``<bytes> <count>``, then signed delta lines appended with ``O_APPEND`` (no lock: each append
is one ``write``). The sum of every line after the first is the usage. The file is recomputed
from the mail files (temp dotlock ``maildirsize.lock`` + rename) when it is missing, longer
than 5120 bytes, unparsable, has a negative total, carries other limits than the configured
ones, or says the user is over quota while it has more than the totals line or is older than
15 minutes (an over-quota answer must not rest on stale arithmetic).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import NamedTuple

from cote.storage.dotlock import LockTimeout, replace_file

NAME = "maildirsize"
MAX_SIZE = 5120
STALE_SECS = 15 * 60


class Maildirsize(NamedTuple):
    bytes_limit: int
    count_limit: int
    total_bytes: int
    total_count: int
    lines: int  # lines after the limits line
    mtime: float


def format_limits(bytes_limit: int, count_limit: int) -> str:
    parts = []
    if bytes_limit or not count_limit:
        parts.append(f"{bytes_limit}S")
    if count_limit:
        parts.append(f"{count_limit}C")
    return ",".join(parts)


def parse_limits(line: str) -> tuple[int, int] | None:
    b = c = 0
    for item in line.strip().split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if item.endswith("S"):
                b = int(item[:-1])
            elif item.endswith("C"):
                c = int(item[:-1])
            else:
                return None
        except ValueError:
            return None
    return b, c


def parse(data: bytes, mtime: float = 0.0) -> Maildirsize | None:
    """The file's content, or None when it is unusable (recalculate)."""
    if len(data) >= MAX_SIZE:
        return None
    text = data.decode("ascii", "replace")
    # an unfinished last line (a writer mid-append) is not counted
    end = text.rfind("\n")
    if end < 0:
        return None
    lines = text[:end].split("\n")
    limits = parse_limits(lines[0])
    if limits is None or len(lines) < 2:
        return None
    tb = tc = 0
    for line in lines[1:]:
        fields = line.split()
        if len(fields) != 2:
            return None
        try:
            tb += int(fields[0])
            tc += int(fields[1])
        except ValueError:
            return None
    return Maildirsize(limits[0], limits[1], tb, tc, len(lines) - 1, mtime)


def read(path: str) -> Maildirsize | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        data = os.read(fd, MAX_SIZE + 1)
    finally:
        os.close(fd)
    return parse(data, st.st_mtime)


def trustworthy(m: Maildirsize, bytes_limit: int, count_limit: int,
                now: float | None = None) -> bool:
    """Whether the file's totals may be used with these configured limits."""
    if (m.bytes_limit, m.count_limit) != (bytes_limit, count_limit):
        return False
    if m.total_bytes < 0 or m.total_count < 0:
        return False
    over = ((bytes_limit and m.total_bytes > bytes_limit)
            or (count_limit and m.total_count > count_limit))
    if over:
        if m.lines > 1:
            return False
        if (now if now is not None else time.time()) - m.mtime > STALE_SECS:
            return False
    return True


def write(path: str, bytes_limit: int, count_limit: int, total_bytes: int, total_count: int,
          *, mode: int = 0o600) -> bool:
    """Replace the file through ``maildirsize.lock``; False when another process holds it
    (that process is recalculating: its result is as good as ours)."""
    content = f"{format_limits(bytes_limit, count_limit)}\n{total_bytes} {total_count}\n"
    try:
        replace_file(path, content.encode(), mode=mode, fsync=False, nonblock=True)
    except LockTimeout:
        return False
    return True


def append(path: str, delta_bytes: int, delta_count: int) -> bool:
    """Append one delta line; False when the file does not exist (recalculate instead)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return False
    try:
        os.write(fd, f"{delta_bytes} {delta_count}\n".encode())
    finally:
        os.close(fd)
    return True


def _size_from_name(name: str) -> int:
    i = name.find(",S=")
    if i < 0:
        return -1
    j = i + 3
    k = j
    while k < len(name) and name[k].isdigit():
        k += 1
    return int(name[j:k]) if k > j else -1


def count_dirs(mail_dirs: Iterable[str]) -> tuple[int, int]:
    """Bytes and messages in ``new/`` and ``cur/`` of these Maildirs (``S=`` or stat size)."""
    total = count = 0
    for d in mail_dirs:
        for sub in ("new", "cur"):
            try:
                it = os.scandir(os.path.join(d, sub))
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    if e.name.startswith("."):
                        continue
                    size = _size_from_name(e.name)
                    if size < 0:
                        try:
                            size = e.stat().st_size
                        except FileNotFoundError:
                            continue
                    total += size
                    count += 1
    return total, count
