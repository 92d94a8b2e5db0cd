"""Maildir file names: ``<base>[,S=<size>][,W=<vsize>][:2,<flags>]`` and new unique bases.

Dovecot puts the physical size (``S=``) and the CRLF size (``W=``) into the base name and the
flags after ``:2,``: ``D`` draft, ``F`` flagged, ``R`` answered, ``S`` seen, ``T`` deleted,
``a``-``z`` keyword letters (see ``dovecot-keywords``). Letters cote does not know are kept.
"""

from __future__ import annotations

import os
import socket
import time

from cote.storage.flags import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

INFO_SEP = ":2,"
_LETTER_TO_FLAG = {"D": DRAFT, "F": FLAGGED, "R": ANSWERED, "S": SEEN, "T": DELETED}
_FLAG_LETTERS = (("D", DRAFT), ("F", FLAGGED), ("R", ANSWERED), ("S", SEEN), ("T", DELETED))


def split(name: str) -> tuple[str, str | None]:
    """``(base, flag letters)``; letters is None for a name without ``:2,`` (a ``new/`` file)."""
    pos = name.find(":2,")
    if pos < 0:
        colon = name.find(":")
        return (name if colon < 0 else name[:colon]), None
    return name[:pos], name[pos + 3 :]


def base_of(name: str) -> str:
    colon = name.find(":")
    return name if colon < 0 else name[:colon]


def sizes(base: str) -> tuple[int | None, int | None]:
    """``(S, W)`` from the ``,S=`` and ``,W=`` fields of a base name (None when absent)."""
    size = vsize = None
    for part in base.split(",")[1:]:
        if part.startswith("S=") and part[2:].isdigit():
            size = int(part[2:])
        elif part.startswith("W=") and part[2:].isdigit():
            vsize = int(part[2:])
    return size, vsize


def parse_flags(letters: str) -> tuple[int, str, str]:
    """``(system flag bits, keyword letters, other letters)`` of the part after ``:2,``."""
    bits = 0
    keywords: list[str] = []
    other: list[str] = []
    for ch in letters:
        flag = _LETTER_TO_FLAG.get(ch)
        if flag is not None:
            bits |= flag
        elif "a" <= ch <= "z":
            keywords.append(ch)
        else:
            other.append(ch)
    return bits, "".join(keywords), "".join(other)


def format_flags(bits: int, keyword_letters: str, other: str = "") -> str:
    """The letters after ``:2,``, in ASCII order (what Dovecot writes), unknown ones kept."""
    letters = {ch for ch, flag in _FLAG_LETTERS if bits & flag}
    letters.update(keyword_letters)
    letters.update(other)
    return "".join(sorted(letters))


def with_flags(base: str, letters: str) -> str:
    return base + INFO_SEP + letters


def _hostname() -> str:
    host = socket.gethostname() or "localhost"
    return host.replace("/", r"\057").replace(":", r"\072")


_HOST = _hostname()
_last = [0]  # last microsecond time stamp handed out by this process


def new_base() -> str:
    """A unique base name ``<secs>.M<usecs>P<pid>.<host>``, strictly increasing in-process."""
    now = max(time.time_ns() // 1000, _last[0] + 1)
    _last[0] = now
    secs, usecs = divmod(now, 1_000_000)
    return f"{secs}.M{usecs}P{os.getpid()}.{_HOST}"
