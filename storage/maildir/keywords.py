"""``dovecot-keywords``: which keyword each filename letter ``a``-``z`` stands for.

One ``<index> <keyword>`` line per letter in use (index 0-25 <-> ``a``-``z``). Dovecot
rewrites it only while holding the uidlist lock, through ``dovecot-keywords.lock`` + rename.
"""

from __future__ import annotations

NAME = "dovecot-keywords"
MAX = 26


def parse(data: bytes) -> list[str | None]:
    slots: list[str | None] = [None] * MAX
    for line in data.decode("utf-8", "replace").split("\n"):
        idx_s, _, name = line.partition(" ")
        if not idx_s.isdigit() or not name:
            continue
        idx = int(idx_s)
        if idx < MAX and name not in slots:
            slots[idx] = name
    return slots


def format(slots: list[str | None]) -> bytes:
    return "".join(f"{i} {name}\n" for i, name in enumerate(slots) if name).encode("utf-8")


def letter(index: int) -> str:
    return chr(ord("a") + index)


def index_of_letter(ch: str) -> int:
    return ord(ch) - ord("a")
