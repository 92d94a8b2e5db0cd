"""The auth cache (``auth_cache_size``, ``auth_cache_ttl``, ``auth_cache_negative_ttl``).

Only drivers with a cache key are cached, as in Dovecot: SQL and LDAP derive theirs from the
``%`` variables of their queries (two requests that would run the same query share an entry);
passwd-file and static are fast and never cached. Entries are the database's answer — the
stored password and fields, or "no such user" (negative) — and the password is still checked
per login: a cached password that does not match is looked up again, so a changed password
works at once. When the database fails (down, timed out), the entry is used even if expired.
Size is accounted approximately, least recently used entries go first.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_VARIABLE = re.compile(r"%(?:\{[^}]*\}|[-0-9.]*[A-Za-z%])")
ENTRY_OVERHEAD = 64


def cache_key_template(*templates: str) -> str | None:
    """The ``%`` variables the queries use, in order, as one key template (None: none)."""
    seen: list[str] = []
    for template in templates:
        for var in _VARIABLE.findall(template):
            if var != "%%" and var not in seen:
                seen.append(var)
    return "\t".join(seen) if seen else None


@dataclass
class _Entry:
    value: Any
    expires: float
    size: int
    user: str
    created: float = 0.0


class AuthCache:
    def __init__(self, size: int, ttl: float, negative_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = size
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self.used = 0
        self.entries: OrderedDict[tuple[str, int, str], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int, str]) -> Any:
        entry = self.entries.get(key)
        if entry is None or entry.expires <= self.clock():
            # An expired entry stays (until pushed out) for stale(): Dovecot answers from it
            # when the database fails.
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry.value

    def stale(self, key: tuple[str, int, str]) -> Any:
        """The entry even past its TTL: used only when the database lookup failed (Dovecot:
        "Falling back to expired data from cache")."""
        entry = self.entries.get(key)
        return None if entry is None else entry.value

    def negative_expired(self, key: tuple[str, int, str]) -> bool:
        """Whether the entry is older than the negative TTL: Dovecot then no longer answers
        a password mismatch from it (the database must say so)."""
        entry = self.entries.get(key)
        return entry is None or entry.created + self.negative_ttl <= self.clock()

    def put(self, key: tuple[str, int, str], value: Any, *, negative: bool, user: str,
            size: int) -> None:
        ttl = self.negative_ttl if negative else self.ttl
        if ttl <= 0 or self.limit <= 0:
            return
        if key in self.entries:
            self._drop(key)
        cost = size + len(key[2]) + ENTRY_OVERHEAD
        now = self.clock()
        self.entries[key] = _Entry(value, now + ttl, cost, user, now)
        self.used += cost
        while self.used > self.limit and self.entries:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple[str, int, str]) -> None:
        entry = self.entries.pop(key)
        self.used -= entry.size

    def flush(self, users: Iterable[str] = ()) -> int:
        """CACHE-FLUSH: everything, or the entries of these users; returns how many went."""
        wanted = set(users)
        keys = [k for k, e in self.entries.items() if not wanted or e.user in wanted]
        for key in keys:
            self._drop(key)
        return len(keys)
