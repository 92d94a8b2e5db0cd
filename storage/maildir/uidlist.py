"""``dovecot-uidlist``: Dovecot's UID <-> file name map, parsed and written byte-exactly.

Version 3 (written): header ``3 V<uidvalidity> N<nextuid> G<mailbox guid>`` (other header
fields are kept), records ``<uid> [<key><value> ...] :<base>``. Version 1 (read):
``1 <uidvalidity> <nextuid>`` then ``<uid> <file>``. New records are appended under the lock
without touching the header, so the next UID is ``max(N, last uid + 1)``.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter, lt, methodcaller

NAME = "dovecot-uidlist"
MAX_UID = 0xFFFFFFFF


class UidlistError(ValueError):
    """A uidlist whose header cannot be understood (the caller rebuilds it)."""


@dataclass(slots=True)
class Uidlist:
    """One parsed uidlist: header values and the records as parallel columns."""

    version: int = 3
    uidvalidity: int = 0
    next_uid: int = 1
    guid: str = ""
    header_extra: list[str] = field(default_factory=list)
    uids: array[int] = field(default_factory=lambda: array("I"))
    exts: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    complete: bool = True
    """False: the header alone was read (the records added go after the file's, unread)."""

    @property
    def real_next_uid(self) -> int:
        last = self.uids[-1] + 1 if self.uids else 1
        return max(self.next_uid, last)

    def add(self, uid: int, base: str, ext: str = "") -> None:
        self.uids.append(uid)
        self.exts.append(ext)
        self.bases.append(base)

    def extend(self, first_uid: int, bases: list[str]) -> None:
        """Records for ``bases`` with UIDs from ``first_uid`` up, without extension fields."""
        self.uids.extend(range(first_uid, first_uid + len(bases)))
        self.exts.extend([""] * len(bases))
        self.bases.extend(bases)

    def by_base(self) -> dict[str, int]:
        return dict(zip(self.bases, self.uids, strict=True))


def parse(data: bytes) -> Uidlist:
    text = data.decode("utf-8", "surrogateescape")
    first, _, rest = text.partition("\n")
    out = parse_header(first)
    parse_records(out, rest)
    return out


def parse_header(first: str) -> Uidlist:
    """The values of the header line, no records yet."""
    if not first.strip():
        raise UidlistError("empty uidlist")
    head = first.split(" ")
    out = Uidlist()
    try:
        out.version = int(head[0])
        if out.version in (1, 2):
            out.uidvalidity, out.next_uid = int(head[1]), int(head[2])
        elif out.version == 3:
            for fld in head[1:]:
                if not fld:
                    continue
                key, value = fld[0], fld[1:]
                if key == "V":
                    out.uidvalidity = int(value)
                elif key == "N":
                    out.next_uid = int(value)
                elif key == "G":
                    out.guid = value
                else:
                    out.header_extra.append(fld)
        else:
            raise UidlistError(f"unsupported uidlist version {out.version}")
    except (IndexError, ValueError) as e:
        raise UidlistError(f"broken uidlist header: {first!r}") from e
    if out.uidvalidity <= 0:
        raise UidlistError("uidlist without UIDVALIDITY")
    return out


_V3_RECORD = re.compile(r"^(\d+) ([^:\n]*):([^:\n]*)[^\n]*\n", re.M)
_V1_RECORD = re.compile(r"^(\d+) (?:\S+ )?([^:\s]+)[^\n]*\n", re.M)
_PARTITION_COLON = methodcaller("partition", ":")
_PARTITION_SPACE = methodcaller("partition", " ")
_FIRST = itemgetter(0)
Columns = tuple[Sequence[str], Sequence[str], Sequence[str]]


def _v3_columns(text: str) -> Columns | None:
    """The ``(uid, ext, base)`` columns ``_V3_RECORD.findall`` gives, by C-level passes
    over the whole lines (about three times faster); None when some line is not a plain
    record (then the regular expression decides which lines count)."""
    lines = text.split("\n")
    lines.pop()  # after the last LF: a record still being written, or nothing
    if not lines:
        return (), (), ()
    heads, colons, tails = zip(*map(_PARTITION_COLON, lines), strict=True)
    if "" in colons:
        return None
    uid_texts, spaces, ext_texts = zip(*map(_PARTITION_SPACE, heads), strict=True)
    if "" in spaces or not all(map(str.isdecimal, uid_texts)):
        return None
    return uid_texts, ext_texts, list(map(_FIRST, map(_PARTITION_COLON, tails)))


def parse_records(out: Uidlist, text: str) -> None:
    """Append the records of ``text`` (the file after its header) to ``out``.

    Only whole lines count: a record a writer is still appending (no LF yet) is ignored, as
    are records whose UID is not above the previous one (Dovecot drops those too) or does
    not fit in 32 bits.
    """
    last = out.uids[-1] if out.uids else 0
    uids, exts, bases = out.uids, out.exts, out.bases
    if out.version == 3:
        columns = _v3_columns(text)
        if columns is None:
            records = _V3_RECORD.findall(text)
            columns = ([r[0] for r in records], [r[1] for r in records],
                       [r[2] for r in records])
        uid_texts, ext_texts, base_texts = columns
        if not uid_texts:
            return
        # the usual file: every UID above the one before, every base named -- taken in
        # whole columns by C-level passes (a 100k-message uidlist is parsed per session)
        new = array("I", map(int, uid_texts)) if max(map(len, uid_texts)) < 10 else None
        if new is not None and new[0] > last and "" not in base_texts \
                and all(map(lt, new, islice(new, 1, None))):
            uids.extend(new)
            exts.extend(map(str.strip, ext_texts))
            bases.extend(base_texts)
            return
        for uid_s, ext, base in zip(uid_texts, ext_texts, base_texts, strict=True):
            uid = int(uid_s)
            if last < uid <= MAX_UID and base:
                uids.append(uid)
                exts.append(ext.strip())
                bases.append(base)
                last = uid
    else:
        for uid_s, base in _V1_RECORD.findall(text):
            uid = int(uid_s)
            if last < uid <= MAX_UID:
                uids.append(uid)
                exts.append("")
                bases.append(base)
                last = uid


def copy(ul: Uidlist) -> Uidlist:
    return Uidlist(ul.version, ul.uidvalidity, ul.next_uid, ul.guid, list(ul.header_extra),
                   array("I", ul.uids), list(ul.exts), list(ul.bases), ul.complete)


def format_header(ul: Uidlist, next_uid: int) -> bytes:
    fields = [f"3 V{ul.uidvalidity} N{next_uid}"]
    if ul.guid:
        fields.append(f"G{ul.guid}")
    fields.extend(ul.header_extra)
    return (" ".join(fields) + "\n").encode("utf-8", "surrogateescape")


def format_records(uids: list[int] | array[int], exts: list[str], bases: list[str]) -> bytes:
    if any(exts):
        parts = [f"{uid} {ext} :{base}\n" if ext else f"{uid} :{base}\n"
                 for uid, ext, base in zip(uids, exts, bases, strict=True)]
    else:  # a new uidlist: no extension fields anywhere
        parts = [f"{uid} :{base}\n" for uid, base in zip(uids, bases, strict=True)]
    return "".join(parts).encode("utf-8", "surrogateescape")


def format(ul: Uidlist) -> bytes:
    """The whole file (always version 3; N is never lowered below the real next UID)."""
    return format_header(ul, ul.real_next_uid) + format_records(ul.uids, ul.exts, ul.bases)


def read(path: str) -> tuple[Uidlist | None, os.stat_result | None]:
    """The uidlist at ``path`` and the stat of the opened file (None, None when missing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None, None
    try:
        st = os.fstat(fd)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return parse(b"".join(chunks)), st


def new_guid() -> str:
    return os.urandom(16).hex()
