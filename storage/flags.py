"""Message flag bits shared by every storage backend and the protocol code.

A message's flags are one int: the five IMAP system flags in the low bits, then one bit per
keyword, numbered by the mailbox's keyword table (``Mailbox.keywords``): keyword ``i`` is bit
``KEYWORD_SHIFT + i``. An int per message keeps 100,000-message mailboxes cheap.
"""

from __future__ import annotations

SEEN = 1
ANSWERED = 2
FLAGGED = 4
DELETED = 8
DRAFT = 16
SYSTEM_MASK = 31
KEYWORD_SHIFT = 5

SYSTEM_FLAGS: dict[str, int] = {
    "\\Seen": SEEN,
    "\\Answered": ANSWERED,
    "\\Flagged": FLAGGED,
    "\\Deleted": DELETED,
    "\\Draft": DRAFT,
}
_BY_LOWER = {name.lower(): bit for name, bit in SYSTEM_FLAGS.items()}
_NAMES = [(bit, name) for name, bit in SYSTEM_FLAGS.items()]


def system_bit(name: str) -> int | None:
    """The bit of a system flag name (case-insensitive), None for a keyword."""
    return _BY_LOWER.get(name.lower())


def system_names(bits: int) -> list[str]:
    return [name for bit, name in _NAMES if bits & bit]


def keyword_bit(index: int) -> int:
    return 1 << (KEYWORD_SHIFT + index)


def keyword_indexes(bits: int) -> list[int]:
    out: list[int] = []
    bits >>= KEYWORD_SHIFT
    i = 0
    while bits:
        if bits & 1:
            out.append(i)
        bits >>= 1
        i += 1
    return out
