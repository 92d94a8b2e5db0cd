"""SEARCH over the selected view: RFC 3501 keys, CHARSET, ESEARCH RETURN, SEARCHRES ``$``,
WITHIN, MODSEQ (SORT and THREAD reuse the ``Searcher``, see sort.py).

Keys that only need the view's columns (flags, UIDs, modseqs, sequence sets) are answered
without opening a file; date and size keys read ``Mailbox.details`` once for the view.
Header keys (SUBJECT, FROM, TO, CC, BCC, HEADER) match the decoded text Dovecot builds for
each (``searchkeys.*_search_text``), kept per message in the ``searchhdr`` cache column:
filled from the header the first time a message is searched (the standard five and every
HEADER name asked), read for the whole view in one query after that, so a warm header
search opens no file. BODY/TEXT scan the text parts (``bodysearch``). A search walks the
key tree per message, with the message's data loaded only when a key asks for it.
"""

from __future__ import annotations

import time
import weakref
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from cote.storage import flags as F
from cote.storage.api import Mailbox, MessageDetails
from cote.storage.errors import StorageError
from cote.storage.message.bodysearch import Needle, body_matches, text_matches
from cote.storage.message.headers import read_header
from cote.storage.message.searchkeys import (
    address_search_text,
    casemap,
    parse_date,
    search_text,
    subject_search_text,
)

from . import commands as C
from . import response as R
from .message_data import HEADER_READ, MessageData
from .values import SearchKey, SeqSet

if TYPE_CHECKING:
    from collections.abc import Callable

    from .session import Session

_FLAG_BITS = {"ANSWERED": F.ANSWERED, "DELETED": F.DELETED, "DRAFT": F.DRAFT,
              "FLAGGED": F.FLAGGED, "SEEN": F.SEEN}
_DETAIL_KEYS = frozenset(("LARGER", "SMALLER", "BEFORE", "ON", "SINCE", "OLDER", "YOUNGER",
                          "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"))

# the header cache: entry key -> (header name, text builder)
_HEADER_ENTRIES: dict[str, tuple[bytes, Callable[[bytes], str]]] = {
    "SUBJECT": (b"subject", subject_search_text), "FROM": (b"from", address_search_text),
    "TO": (b"to", address_search_text), "CC": (b"cc", address_search_text),
    "BCC": (b"bcc", address_search_text)}
_CACHE = "searchhdr"
_CACHE_VERSION = "h3"
"""Leads every cached blob; a blob of another version (older rules) is rebuilt."""
_ENTRY, _NAME_END, _VALUE = "\x1e", "\x1f", "\x1d"
_SEPARATORS = {0x1C: " ", 0x1D: " ", 0x1E: " ", 0x1F: " "}
_HINT_BATCH = 512
_CHUNK = 4096


class _Memo:
    """Header-cache segments already read for one selected view, per entry and UID: a
    SEARCH repeated in the session reads neither the index nor the files (the UIDs'
    messages never change while the UIDVALIDITY stays)."""

    __slots__ = ("entries", "uidvalidity")

    def __init__(self, uidvalidity: int) -> None:
        self.uidvalidity = uidvalidity
        self.entries: dict[str, dict[int, str]] = {}


_MEMOS: weakref.WeakKeyDictionary[Mailbox, _Memo] = weakref.WeakKeyDictionary()
_MEMO_LIMIT = 200_000
"""Views with more messages keep no memo (its memory would grow with the mailbox)."""


def _memo_of(box: Mailbox, n: int) -> _Memo | None:
    if n > _MEMO_LIMIT:
        return None
    try:
        memo = _MEMOS.get(box)
        if memo is None or memo.uidvalidity != box.uidvalidity:
            memo = _MEMOS[box] = _Memo(box.uidvalidity)
    except TypeError:  # a view that cannot be weakly referenced
        return None
    return memo


def _entry_of(key: SearchKey) -> str | None:
    if key.kind in _HEADER_ENTRIES:
        return key.kind
    if key.kind == "HEADER":
        assert isinstance(key.arg, tuple)
        return "h:" + str(key.arg[0]).lower().translate(_SEPARATORS)
    return None


def _entries_in(key: SearchKey, out: set[str]) -> set[str]:
    entry = _entry_of(key)
    if entry is not None:
        out.add(entry)
    for c in key.children:
        _entries_in(c, out)
    return out


def _uses(key: SearchKey, kinds: frozenset[str]) -> bool:
    return key.kind in kinds or any(_uses(c, kinds) for c in key.children)


class _HeaderNeedle:
    """A header key's search string, prepared once per SEARCH."""

    __slots__ = ("key", "plain")

    def __init__(self, text: str) -> None:
        self.key = casemap(text)
        self.plain = not any(0x1C <= ord(c) <= 0x1F for c in self.key)
        """No separator character: a substring test on the whole segment is exact."""

    def found(self, segment: str) -> bool:
        """``segment`` holds one entry's values, each after a ``_VALUE`` mark."""
        key = self.key
        if not key:
            return _VALUE in segment  # the header exists
        if self.plain:
            return key in segment
        key = key.translate(_SEPARATORS)
        return any(key in v for v in segment.split(_VALUE)[1:])


class SearchMessage:
    """Per-message lazy data for one search."""

    __slots__ = ("data", "details", "fields", "headers", "index", "uid")

    def __init__(self, index: int, uid: int, data: MessageData) -> None:
        self.index = index
        self.uid = uid
        self.data = data
        self.details: MessageDetails | None = None
        self.fields: list[tuple[bytes, bytes]] | None = None
        self.headers: str | None = None
        """The cached header-search blob of the message (``_CACHE_VERSION`` + entries)."""


class Searcher:
    def __init__(self, s: Session) -> None:
        self.s = s
        box = s.box
        assert box is not None
        self.box = box
        self.n = len(box)
        self.now = time.time()
        self.expunged = False
        """A message the search had to read was expunged by another session (Dovecot's
        ``OK [EXPUNGEISSUED]``)."""
        self.all_details: dict[int, MessageDetails] | None = None
        self.cached_headers: dict[int, bytes] = {}
        self.entries: set[str] = set()
        """Header-cache entries this search needs; with the standard five, those filled."""
        self.cache_writes: list[tuple[int, str, bytes]] = []
        self.needles: dict[int, Needle] = {}
        self.header_needles: dict[int, _HeaderNeedle] = {}
        self.memo = _memo_of(box, self.n)

    def details(self, m: SearchMessage) -> MessageDetails:
        if m.details is None:
            if self.all_details is not None:
                found = [self.all_details[m.uid]] if m.uid in self.all_details else []
            else:
                found = self.box.details([m.uid])
            # expunged by another session since the view's last sync: nothing is known
            m.details = found[0] if found else MessageDetails(m.uid, 0, 0, 0.0, 0, 0)
            self.expunged = self.expunged or not found
        return m.details

    def fields(self, m: SearchMessage) -> list[tuple[bytes, bytes]]:
        """The message header's fields (the header alone is read, no MIME scan)."""
        if m.fields is None:
            head = m.data.header_bytes()
            m.fields, _, _ = read_header(head, 0, len(head))
        return m.fields

    def header_segment(self, m: SearchMessage, entry: str) -> str:
        """The values of one header-cache entry, each after a ``_VALUE`` mark; built from
        the header (and cached) when the message's blob lacks it."""
        memo = self.memo.entries.setdefault(entry, {}) if self.memo is not None else None
        if memo is not None:
            found = memo.get(m.uid)
            if found is not None:
                return found
        segment = self._segment(m, entry)
        if memo is not None:
            memo[m.uid] = segment
        return segment

    def _segment(self, m: SearchMessage, entry: str) -> str:
        blob = m.headers
        if blob is None:
            raw = self.cached_headers.get(m.uid)
            blob = raw.decode("utf-8", "replace") if raw is not None else ""
            if not blob.startswith(_CACHE_VERSION):
                blob = _CACHE_VERSION
            m.headers = blob
        tag = _ENTRY + entry + _NAME_END
        at = blob.find(tag)
        if at < 0:
            blob = self._fill_headers(m, blob)
            at = blob.find(tag)
        start = at + len(tag)
        end = blob.find(_ENTRY, start)
        return blob[start:] if end < 0 else blob[start:end]

    def _fill_headers(self, m: SearchMessage, blob: str) -> str:
        fields = self.fields(m)
        added: list[str] = [blob]
        for entry in dict.fromkeys((*_HEADER_ENTRIES, *sorted(self.entries))):
            tag = _ENTRY + entry + _NAME_END
            if tag in blob:
                continue
            build: Callable[[bytes], str]
            if entry.startswith("h:"):
                name, build = entry[2:].encode("utf-8", "surrogateescape"), search_text
            else:
                name, build = _HEADER_ENTRIES[entry]
            values = [_VALUE + casemap(build(v)).translate(_SEPARATORS)
                      for k, v in fields if k == name]
            added.append(tag + "".join(values))
        blob = "".join(added)
        m.headers = blob
        self.cache_writes.append((m.uid, _CACHE, blob.encode("utf-8", "surrogatepass")))
        return blob

    def header_needle(self, key: SearchKey, text: object) -> _HeaderNeedle:
        found = self.header_needles.get(id(key))
        if found is None:
            found = self.header_needles[id(key)] = _HeaderNeedle(str(text))
        return found

    def needle(self, key: SearchKey) -> Needle:
        found = self.needles.get(id(key))
        if found is None:
            found = self.needles[id(key)] = Needle(str(key.arg))
        return found

    def matches(self, key: SearchKey, m: SearchMessage) -> bool:
        k = key.kind
        box = self.box
        i = m.index
        if k == "AND":
            return all(self.matches(c, m) for c in key.children)
        if k == "OR":
            return self.matches(key.children[0], m) or self.matches(key.children[1], m)
        if k == "NOT":
            return not self.matches(key.children[0], m)
        if k == "ALL":
            return True
        bits = box.flags[i]
        if k in _FLAG_BITS:
            return bool(bits & _FLAG_BITS[k])
        if k.startswith("UN") and k[2:] in _FLAG_BITS:
            return not bits & _FLAG_BITS[k[2:]]
        if k == "RECENT":
            return m.uid in self.s.recent
        if k == "OLD":
            return m.uid not in self.s.recent
        if k == "NEW":
            return m.uid in self.s.recent and not bits & F.SEEN
        if k in ("KEYWORD", "UNKEYWORD"):
            name = str(key.arg).lower()
            has = any(kw.lower() == name for kw in box.flag_names(bits & ~F.SYSTEM_MASK))
            return has if k == "KEYWORD" else not has
        if k == "SEQSET":
            s = key.arg
            assert isinstance(s, SeqSet)
            if s.saved:
                return m.uid in set(self.s.saved or [])
            return s.contains(i + 1, self.n)
        if k == "UID":
            s = key.arg
            assert isinstance(s, SeqSet)
            if s.saved:
                return m.uid in set(self.s.saved or [])
            return s.contains(m.uid, box.uids[-1] if self.n else 0)
        if k == "MODSEQ":
            arg = key.arg
            assert isinstance(arg, tuple)
            return bool(box.modseqs[i] >= arg[1])
        if k in ("LARGER", "SMALLER"):
            size = self.details(m).vsize
            return size > key.arg if k == "LARGER" else size < key.arg  # type: ignore[operator]
        if k in ("BEFORE", "ON", "SINCE"):
            when = datetime.fromtimestamp(self.details(m).internal_date).astimezone().date()
            return _date_cmp(k, when, key.arg)  # type: ignore[arg-type]
        if k in ("OLDER", "YOUNGER"):
            age = self.now - self.details(m).internal_date
            return age >= key.arg if k == "OLDER" else age <= key.arg  # type: ignore[operator]
        if k in _HEADER_ENTRIES:
            return self.header_needle(key, key.arg).found(self.header_segment(m, k))
        if k in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            values = [v for n, v in self.fields(m) if n == b"date"]
            parsed = parse_date(values[-1]) if values else None
            if parsed is None:  # no usable Date: Dovecot's date 0, the epoch
                when = date(1970, 1, 1)
            else:
                stamp, offset = parsed
                when = datetime.fromtimestamp(stamp + offset * 60, UTC).date()
            return _date_cmp(k[4:], when, key.arg)  # type: ignore[arg-type]
        if k in ("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"):
            when = datetime.fromtimestamp(self.details(m).internal_date).astimezone().date()
            return _date_cmp(k[5:], when, key.arg)  # type: ignore[arg-type]
        if k == "SAVEDATESUPPORTED":
            return True
        if k == "HEADER":
            arg = key.arg
            assert isinstance(arg, tuple)
            segment = self.header_segment(m, "h:" + str(arg[0]).lower().translate(_SEPARATORS))
            return self.header_needle(key, arg[1]).found(segment)
        if k == "BODY":
            return body_matches(m.data.buf, m.data.parts, self.needle(key))
        if k == "TEXT":
            return text_matches(m.data.buf, m.data.parts, self.needle(key))
        return False  # X-GUID, EMAILID, THREADID, X-MAILBOX: nothing matches

    def run(self, key: SearchKey) -> list[int]:
        """0-based indexes of the matching messages, ascending."""
        out: list[int] = []
        box = self.box
        if _uses(key, _DETAIL_KEYS):
            self.all_details = {d.uid: d for d in box.details(box.uids[:self.n])}
        self.entries = _entries_in(key, set())
        single = _single_header_key(key)
        for start in range(0, self.n, _CHUNK):
            # a chunk's cached header texts at a time: memory stays flat on 100,000 messages
            stop = min(self.n, start + _CHUNK)
            if single is not None and self._memo_run(single, start, stop, out):
                continue
            if self.entries and not self._memoized(start, stop):
                try:
                    self.cached_headers = box.cache_get_many(box.uids[start:stop], _CACHE)
                except StorageError:
                    self.cached_headers = {}  # no usable cache: the headers are read
            try:
                self._run(key, start, stop, out)
            finally:
                if self.cache_writes:
                    try:
                        box.cache_put_many(self.cache_writes)
                    except StorageError:
                        pass  # rebuilt by the next search
                    self.cache_writes = []
        return out

    def _memoized(self, start: int, stop: int) -> bool:
        """Whether the memo holds every entry this search needs for the chunk."""
        if self.memo is None:
            return False
        uids = self.box.uids[start:stop]
        for entry in self.entries:
            have = self.memo.entries.get(entry)
            if have is None or any(u not in have for u in uids):
                return False
        return True

    def _memo_run(self, key: SearchKey, start: int, stop: int, out: list[int]) -> bool:
        """A search of one header key over a memoized chunk, without the per-message key
        walk; False (nothing done) when the memo lacks part of the chunk."""
        entry = _entry_of(key)
        if self.memo is None or entry is None or not self._memoized(start, stop):
            return False
        segments = self.memo.entries[entry]
        text = key.arg
        if key.kind == "HEADER":
            assert isinstance(text, tuple)
            text = text[1]
        needle = self.header_needle(key, text)
        uids = self.box.uids
        out.extend(i for i in range(start, stop) if needle.found(segments[uids[i]]))
        return True

    def _uncached(self, start: int, stop: int) -> list[int]:
        """The chunk's UIDs whose cached header texts lack an entry this search needs."""
        tags = [(_ENTRY + e + _NAME_END).encode() for e in self.entries]
        version = _CACHE_VERSION.encode()
        cached = self.cached_headers
        out = []
        for u in self.box.uids[start:stop]:
            blob = cached.get(u)
            if blob is None or not blob.startswith(version) or any(t not in blob for t in tags):
                out.append(u)
        return out

    def _run(self, key: SearchKey, start: int, stop: int, out: list[int]) -> None:
        box = self.box
        uncached = self._uncached(start, stop) if self.entries else []
        hinted = 0
        for i in range(start, stop):
            if uncached and hinted < len(uncached) and box.uids[i] >= uncached[hinted]:
                # the next headers to read, asked of the disk together
                try:
                    box.will_read(uncached[hinted:hinted + _HINT_BATCH], HEADER_READ)
                except StorageError:
                    pass
                hinted += _HINT_BATCH
            data = MessageData(box, box.uids[i])
            m = SearchMessage(i, box.uids[i], data)
            try:
                if self.matches(key, m):
                    out.append(i)
            except (StorageError, OSError):
                self.expunged = True
            finally:
                data.close()


def _single_header_key(key: SearchKey) -> SearchKey | None:
    """The key when the whole search is one header key (``SEARCH SUBJECT x``)."""
    while key.kind == "AND" and len(key.children) == 1:
        key = key.children[0]
    return key if _entry_of(key) is not None else None


def _date_cmp(kind: str, when: date, arg: date) -> bool:
    if kind == "BEFORE":
        return when < arg
    if kind == "ON":
        return when == arg
    return when >= arg


def check_charset(charset: str | None) -> R.Reply | None:
    if charset is not None and not C.charset_supported(charset):
        return R.no("Unknown charset", "BADCHARSET")
    return None


def _keywords_in(key: SearchKey) -> list[str]:
    out = [str(key.arg)] if key.kind in ("KEYWORD", "UNKEYWORD") else []
    for c in key.children:
        out.extend(_keywords_in(c))
    return out


def register_keywords(s: Session, names: list[str]) -> None:
    """Dovecot adds a keyword that a SEARCH or STORE names to its in-memory keyword list of
    the mailbox (the client gets a new FLAGS response) even when no message gets it, in
    read-only sessions too. How long Dovecot remembers it depends on its index cache; cote
    keeps it until the mailbox is closed (docs/differences.md)."""
    box = s.box
    assert box is not None
    known = {kw.lower() for kw in s.all_keywords()}
    local = s.local_keywords.setdefault(box.name, [])
    for name in dict.fromkeys(names):
        if not name.startswith("\\") and name.lower() not in known:
            local.append(name)
            known.add(name.lower())


def _uses_modseq(key: SearchKey) -> bool:
    return key.kind == "MODSEQ" or any(_uses_modseq(c) for c in key.children)


def run_search(s: Session, args: C.Search, *, uid: bool) -> R.Reply:
    err = check_charset(args.charset)
    if err:
        return err
    box = s.box
    assert box is not None
    modseq = _uses_modseq(args.key)
    if modseq:
        s.enable_condstore()
    register_keywords(s, _keywords_in(args.key))
    searcher = Searcher(s)
    hits = searcher.run(args.key)
    numbers = [box.uids[i] if uid else i + 1 for i in hits]
    max_modseq = max((box.modseqs[i] for i in hits), default=0) if modseq else None
    if args.returns is None:
        s.writer.write(R.search(numbers, max_modseq if hits else None))
    else:
        esearch(s, args.returns, hits, numbers, uid=uid, max_modseq=max_modseq)
    s.send_keywords_if_new()
    return s.ok("SEARCH", "EXPUNGEISSUED" if searcher.expunged else None)


def esearch(s: Session, returns: tuple[str, ...], hits: list[int], numbers: list[int], *,
             uid: bool, max_modseq: int | None) -> None:
    box = s.box
    assert box is not None
    opts = set(returns) or {"ALL"}
    if "SAVE" in opts:
        if opts == {"SAVE"}:
            s.saved = [box.uids[i] for i in hits]
            return
        if "MIN" in opts or "MAX" in opts:
            keep = []
            if "MIN" in opts and hits:
                keep.append(hits[0])
            if "MAX" in opts and hits:
                keep.append(hits[-1])
            s.saved = sorted({box.uids[i] for i in keep})
        else:
            s.saved = [box.uids[i] for i in hits]
    results: dict[str, int | SeqSet] = {}
    if numbers:
        if "MIN" in opts:
            results["MIN"] = numbers[0]
        if "MAX" in opts:
            results["MAX"] = numbers[-1]
        if "ALL" in opts:
            results["ALL"] = SeqSet.from_ints(numbers)
    if "COUNT" in opts:
        results["COUNT"] = len(numbers)
    if max_modseq is not None and numbers:
        results["MODSEQ"] = max_modseq
    s.writer.write(R.esearch(s.current_tag, uid, results))


__all__ = ["Searcher", "check_charset", "register_keywords", "run_search"]
