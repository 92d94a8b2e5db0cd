"""Typed values the IMAP grammar produces: sequence sets, sections, fetch attributes, search keys.

They exist so that command handlers get meaning, not tokens: a ``SeqSet`` knows how to resolve
``*`` against the mailbox's highest number and answers membership in O(log n); a ``Section``
knows its part path and text specifier; a ``SearchKey`` is a tree a search engine can walk.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

STAR = 0
"""``*`` in a sequence set: the highest number in use (resolved against a maximum)."""


@dataclass(frozen=True, slots=True)
class SeqSet:
    """An IMAP sequence set (``1:3,5,7:*``) or ``$`` (the saved SEARCHRES result).

    ``ranges`` keeps the client's ranges as written (``STAR`` = 0 for ``*``), each with
    ``lo <= hi`` after ``*`` is taken into account only at resolve time.
    """

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False

    @classmethod
    def from_ints(cls, numbers: Iterable[int]) -> SeqSet:
        """A compact set of the given numbers (ranges of consecutive ones)."""
        nums = sorted(set(numbers))
        ranges: list[tuple[int, int]] = []
        for n in nums:
            if ranges and ranges[-1][1] == n - 1:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        return cls(tuple(ranges))

    @property
    def uses_star(self) -> bool:
        return any(STAR in (lo, hi) for lo, hi in self.ranges)

    def resolve(self, highest: int) -> list[tuple[int, int]]:
        """Sorted, merged, non-overlapping ``(lo, hi)`` ranges with ``*`` = ``highest``.

        As RFC 3501 says, ``n:*`` with ``n > highest`` still means ``highest:n``; handlers
        that must not go past the mailbox clip with ``clip``.
        """
        out: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            lo = highest if lo == STAR else lo
            hi = highest if hi == STAR else hi
            if lo > hi:
                lo, hi = hi, lo
            out.append((lo, hi))
        out.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def clip(self, highest: int) -> list[tuple[int, int]]:
        """``resolve`` limited to ``1..highest`` (empty ranges dropped)."""
        out = []
        for lo, hi in self.resolve(highest):
            if lo > highest:
                break
            out.append((max(lo, 1), min(hi, highest)))
        return [r for r in out if r[0] <= r[1]]

    def iter(self, highest: int) -> Iterator[int]:
        """Every number of the set within ``1..highest``, ascending, once."""
        for lo, hi in self.clip(highest):
            yield from range(lo, hi + 1)

    def matcher(self, highest: int) -> SeqMatcher:
        return SeqMatcher(self.resolve(highest))

    def contains(self, number: int, highest: int) -> bool:
        return number in self.matcher(highest)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for lo, hi in self.ranges:
            a = "*" if lo == STAR else str(lo)
            b = "*" if hi == STAR else str(hi)
            parts.append(a if lo == hi else f"{a}:{b}")
        return ",".join(parts)

    def __bytes__(self) -> bytes:
        return str(self).encode()


class SeqMatcher:
    """Fast membership against resolved ranges (binary search over the range starts)."""

    __slots__ = ("_his", "_los")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self._los = [lo for lo, _ in ranges]
        self._his = [hi for _, hi in ranges]

    def __contains__(self, number: int) -> bool:
        i = bisect.bisect_right(self._los, number) - 1
        return i >= 0 and number <= self._his[i]


# -- FETCH ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Section:
    """``[1.2.HEADER.FIELDS (A B)]``: a MIME part path plus an optional text specifier.

    ``text`` is one of ``None`` (whole part), ``HEADER``, ``HEADER.FIELDS``,
    ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME``; ``fields`` holds the header names in upper
    case.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()
    fields_echo: str = ""
    """The header list as the response repeats it (Dovecot keeps quoted names quoted)."""

    def __str__(self) -> str:
        items = [str(p) for p in self.part]
        if self.text:
            items.append(self.text)
        spec = ".".join(items)
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            spec += " (" + (self.fields_echo or " ".join(self.fields)) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One FETCH data item. ``name`` is the canonical upper-case name without ``.PEEK``
    (``FLAGS``, ``BODY``, ``BODY[]`` is ``name="BODY"`` with a ``section``, ``BINARY``,
    ``BINARY.SIZE``, ``RFC822.HEADER``, ``PREVIEW`` …). ``partial`` is ``(offset, length or
    None)``.
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int | None] | None = None
    peek: bool = False
    options: tuple[str, ...] = ()
    """Modifiers such as PREVIEW's ``(LAZY)``."""

    @property
    def response_name(self) -> str:
        """How this item is named in the FETCH response (``BODY[HEADER]<0>``)."""
        if self.section is None:
            return self.name
        out = f"{self.name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


FETCH_MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


# -- SEARCH -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SearchKey:
    """A node of a search program.

    ``kind`` is the upper-case key (``ALL``, ``FLAGGED``, ``FROM``, ``HEADER``, ``LARGER``,
    ``SINCE``, ``UID``, ``MODSEQ``, ``OLDER`` …), ``SEQSET`` for a bare sequence set,
    ``AND`` for a parenthesised list or the top-level program, ``OR`` (two children),
    ``NOT`` and ``FUZZY`` (one child). ``arg`` holds the typed argument: ``str`` for text
    keys (decoded in the SEARCH charset), ``int`` for sizes/seconds, ``date`` for date keys,
    ``SeqSet`` for ``UID``/``SEQSET`` (``saved=True`` for ``$``), ``(name, value)`` for
    HEADER, ``(ModSeqEntry or None, modseq)`` for MODSEQ.
    """

    kind: str
    arg: object = None
    children: tuple[SearchKey, ...] = ()


@dataclass(frozen=True, slots=True)
class ModSeqEntry:
    """The optional ``"/flags/\\\\seen" all`` entry of a MODSEQ search key."""

    name: str
    type: str


# -- small typed carriers ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox name: ``name`` decoded from modified UTF-7 (``INBOX`` in any case becomes
    ``INBOX``), ``raw`` as the client wrote it; ``valid`` is False for a name that is not
    valid modified UTF-7 (then ``name`` is ``raw`` as Latin-1; Dovecot answers NO)."""

    name: str
    raw: bytes
    valid: bool = True

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class QResync:
    """``QRESYNC (uidvalidity modseq [known-uids [(seq-match uid-match)]])``."""

    uidvalidity: int
    modseq: int
    known_uids: SeqSet | None = None
    seq_match: tuple[SeqSet, SeqSet] | None = None
