"""One message's bytes and parsed structure, loaded once per FETCH/SEARCH item that needs them.

The message file is mapped (``mmap``) rather than read, so BODY[] of a 50 MB message is sent
in bounded chunks straight from the page cache. The scanned part list, ENVELOPE,
BODYSTRUCTURE, BODY and sort keys are kept in the storage cache (``Mailbox.cache_put``) so
a second FETCH ENVELOPE never opens the file.
"""

from __future__ import annotations

import json
import mmap
import os
from typing import BinaryIO

from cote.storage.api import Mailbox
from cote.storage.message import Part, SortKeys, loads, summarize
from cote.storage.message.envelope import envelope
from cote.storage.message.headers import Buffer, read_header
from cote.storage.message.summary import sort_keys

HEADER_READ = 16384
"""Octets of a message read first when only its header is needed."""


def _no_readahead(f: BinaryIO) -> None:
    """Only the header's pages are wanted: with the page cache cold, the kernel's readahead
    would read 32 KB or more of each file (reading 3,000 evicted bench messages' first
    16 KB: 0.45 s with readahead, 0.24 s without)."""
    try:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
    except (AttributeError, OSError, ValueError):
        pass  # not a plain file (an mbox message window): nothing to advise


def pack_structure(bodystructure: bytes, body: bytes, parts: bytes) -> bytes:
    """The storage cache has three columns (envelope, bodystructure, sortkeys): the
    ``bodystructure`` one holds BODYSTRUCTURE, BODY and the scanned part list together."""
    return b"%d %d\n" % (len(bodystructure), len(body)) + bodystructure + body + parts


def unpack_structure(blob: bytes) -> tuple[bytes, bytes, bytes] | None:
    head, nl, rest = blob.partition(b"\n")
    try:
        a, b = (int(x) for x in head.split(b" "))
    except ValueError:
        return None
    if not nl or len(rest) < a + b:
        return None
    return rest[:a], rest[a:a + b], rest[a + b:]


def flush_cache(box: Mailbox, writes: list[tuple[int, str, bytes]]) -> None:
    """Store queued cache entries, in one write transaction when the backend has one."""
    if not writes:
        return
    box.cache_put_many(writes)
    writes.clear()


class MessageData:
    """Lazy access to one message of a view: ``buf`` (mmap/bytes), ``parts``, cached items."""

    __slots__ = ("_absent", "_buf", "_file", "_local", "_parts", "box", "pending", "uid")

    def __init__(self, box: Mailbox, uid: int,
                 pending: list[tuple[int, str, bytes]] | None = None) -> None:
        self.box = box
        self.uid = uid
        self.pending = pending
        """When given, cache writes are queued here for ``flush_cache`` (one transaction
        for a whole FETCH batch instead of one per message)."""
        self._file: BinaryIO | None = None
        self._buf: Buffer | None = None
        self._parts: tuple[Part, ...] | None = None
        self._local: dict[str, bytes] = {}
        self._absent: tuple[str, ...] = ()
        """Cache columns a batch query found empty: not asked again one message at a time."""

    @property
    def buf(self) -> Buffer:
        if self._buf is None:
            f = self.box.open_message(self.uid)
            self._file = f
            try:
                self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty file (or not mappable)
                self._buf = f.read()
        return self._buf

    def _summarize(self) -> None:
        parts, summary = summarize(self.buf)
        self._parts = parts
        self._local = {"envelope": summary.envelope, "bodystructure": summary.bodystructure,
                       "body": summary.body, "parts": summary.parts,
                       "sortkeys": json.dumps(list(summary.sort)).encode()}
        writes = [(self.uid, "envelope", summary.envelope),
                  (self.uid, "bodystructure", pack_structure(
                      summary.bodystructure, summary.body, summary.parts)),
                  (self.uid, "sortkeys", self._local["sortkeys"])]
        if self.pending is not None:
            self.pending.extend(writes)
        else:
            flush_cache(self.box, writes)

    def preload(self, column: str, blob: bytes | None) -> None:
        """A cache column's value read beforehand (a whole FETCH batch in one query); None:
        that query found none."""
        if blob is None:
            self._absent += (column,)
            return
        if column != "bodystructure":
            self._local[column] = blob
            return
        unpacked = unpack_structure(blob)
        if unpacked is not None:
            self._local["bodystructure"], self._local["body"], self._local["parts"] = unpacked

    def _from_cache(self, field: str) -> bytes | None:
        if (field if field in ("envelope", "sortkeys") else "bodystructure") in self._absent:
            return None
        if field in ("envelope", "sortkeys"):
            return self.box.cache_get(self.uid, field)
        blob = self.box.cache_get(self.uid, "bodystructure")
        if blob is None:
            return None
        unpacked = unpack_structure(blob)
        if unpacked is None:
            return None
        self._local["bodystructure"], self._local["body"], self._local["parts"] = unpacked
        return self._local[field]

    def cached(self, field: str) -> bytes:
        """``envelope``, ``bodystructure`` or ``body`` (computed and cached when missing)."""
        value = self._local.get(field) or self._from_cache(field)
        if value is None and field in ("envelope", "sortkeys") and self._parts is None:
            self._from_header(field)  # the header is enough: no MIME scan of a 5 MB body
            value = self._local[field]
        if value is None:
            self._summarize()
            value = self._local[field]
        return value

    def header_bytes(self) -> Buffer:
        """The message's header block (with what follows it in the last read): the first
        16 KB read with one ``read``, more only while no empty line ended the header, so a
        cold FETCH ENVELOPE of a 5 MB message neither maps nor faults in its body."""
        if self._buf is not None:
            return self._buf
        with self.box.open_message(self.uid) as f:
            _no_readahead(f)
            data = f.read(HEADER_READ)
            while len(data) >= HEADER_READ and b"\n\n" not in data \
                    and b"\n\r\n" not in data:
                more = f.read(len(data))
                if not more:
                    break
                data += more
        return data

    def _from_header(self, field: str) -> None:
        """ENVELOPE or the sort keys from the header alone (cold FETCH ENVELOPE reads only
        headers, as Dovecot does, and leaves the sort keys to the first SORT); cached like
        ``_summarize``'s."""
        head = self.header_bytes()
        fields, _, _ = read_header(head, 0, len(head))
        if field == "envelope":
            value = envelope(fields)
        else:
            value = json.dumps(list(sort_keys(fields))).encode()
        self._local[field] = value
        writes = [(self.uid, field, value)]
        if self.pending is not None:
            self.pending.extend(writes)
        else:
            flush_cache(self.box, writes)

    @property
    def parts(self) -> tuple[Part, ...]:
        if self._parts is None:
            raw = self._local.get("parts") or self._from_cache("parts")
            if raw is not None:
                try:
                    self._parts = loads(raw)
                except Exception:
                    self._parts = None
            if self._parts is None:
                self._summarize()
        assert self._parts is not None
        return self._parts

    def sort_keys(self) -> SortKeys:
        return SortKeys(*json.loads(self.cached("sortkeys")))

    def close(self) -> None:
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()
        self._buf = None
        if self._file is not None:
            self._file.close()
            self._file = None
