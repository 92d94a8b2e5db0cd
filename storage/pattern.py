"""IMAP LIST patterns (RFC 3501 §6.3.8): ``*`` matches anything, ``%`` one hierarchy level.

``INBOX`` is case-insensitive at the top level, as IMAP requires.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def compile_pattern(pattern: str, separator: str) -> Callable[[str], bool]:
    parts: list[str] = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append(f"[^{re.escape(separator)}]*" if separator else ".*")
        else:
            parts.append(re.escape(ch))
    regex = re.compile("".join(parts) + r"\Z", re.DOTALL)
    inbox_len = 5

    def match(name: str) -> bool:
        if regex.match(name):
            return True
        # the pattern may spell INBOX in another case: only INBOX itself and its children
        # (``INBOX<sep>...``) are then compared with the pattern's spelling of INBOX
        if name[:inbox_len] != "INBOX" or (len(name) > inbox_len and name[inbox_len:inbox_len + 1]
                                           != separator):
            return False
        head = pattern[:inbox_len]
        return head.upper() == "INBOX" and bool(regex.match(head + name[inbox_len:]))

    return match


def normalize_inbox(name: str, separator: str) -> str:
    """``inbox`` / ``Inbox/sub`` -> ``INBOX`` / ``INBOX/sub``."""
    head = name[:5]
    if head.upper() == "INBOX" and (len(name) == 5 or name[5:6] == separator):
        return "INBOX" + name[5:]
    return name
