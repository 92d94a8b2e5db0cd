"""One session's view of an mbox mailbox, in Dovecot's format (see ``cote.storage.mbox.format``).

The file is the only state: UIDs, UIDVALIDITY, flags and keywords live in its metadata
headers, so Dovecot and cote can take turns on the same file. A sync re-reads the file only
when its inode, size or mtime changed (or the user's pending changes did). Changes (new
UIDs, expunges, the ``O`` of messages this session has seen as \\Recent) are written under the
write locks by rewriting the file in place from the first byte that changes (as Dovecot
does: the mbox's directory, e.g. ``/var/mail``, may not let us create a temp file), then
fsynced. Flag and keyword changes too with ``mbox_lazy_writes = no``; with ``yes`` (Dovecot's
default) they wait in ``cote.storage.mbox.pending`` until a full write sync: EXPUNGE, CHECK
(:meth:`MboxMailbox.flush`), closing the mailbox, or any other rewrite of the file by cote.
Modseqs are per session (the file has no room for them).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sqlite3
import time
from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from cote.storage import flags as F
from cote.storage.api import (
    AppendTransaction,
    ChangeWatcher,
    Mailbox,
    MailboxStatus,
    MessageDetails,
    StoreResult,
    SyncChanges,
)
from cote.storage.dotlock import LockTimeout
from cote.storage.errors import (
    MailboxNotFound,
    MessageGone,
    ReadOnly,
    StorageError,
    os_errors_as_storage_errors,
)
from cote.storage.mbox import format as fmt
from cote.storage.mbox.locking import MboxLock
from cote.storage.mbox.pending import State
from cote.storage.notify import watch

if TYPE_CHECKING:
    from cote.storage.mbox.list import MboxList

_HOST = socket.gethostname().split(".")[0]
log = logging.getLogger("cote.storage")


class _State(NamedTuple):
    uid: int
    bits: int
    keywords: tuple[str, ...]
    old: bool


class _Msg(NamedTuple):
    rec: fmt.Record
    idate: float
    vsize: int


def parse_flags(names: Iterable[str]) -> tuple[int, list[str]]:
    """System flag bits and keyword names (in order, once each) of a flag list."""
    bits = 0
    kws: list[str] = []
    for name in names:
        b = F.system_bit(name)
        if b is not None:
            bits |= b
        elif name.startswith("\\"):
            if name.lower() != "\\recent":
                raise StorageError(f"Invalid system flag {name}", code="CANNOT")
        elif name not in kws:
            kws.append(name)
    return bits, kws


def _vsize(data: bytes, rec: fmt.Record) -> int:
    lf = sum(data.count(b"\n", a, b) - data.count(b"\r\n", a, b) for a, b in rec.kept)
    lf += 1 + data.count(b"\n", rec.body_off, rec.body_end) \
        - data.count(b"\r\n", rec.body_off, rec.body_end)
    return rec.size + lf


@os_errors_as_storage_errors
class MboxMailbox(Mailbox):
    def __init__(self, mlist: MboxList, name: str, path: str, readonly: bool, *,
                 view: bool = True) -> None:
        self.mlist = mlist
        self.name = name
        self.path = path
        self.readonly = readonly
        self.uids = array("I")
        self.flags: list[int] = []
        self.modseqs = array("Q")
        self.keywords: list[str] = []
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 1
        self._sig: tuple[int, int, int] | None = None
        self._msgs: dict[int, _Msg] = {}
        self._recent: set[int] = set()
        self._cache: dict[tuple[int, str], bytes] = {}
        self._pending = mlist.pending
        self._pver = -1  # the pending changes' version this view shows
        if not os.path.isfile(path):
            raise MailboxNotFound(name)
        if view:
            # without a view (a delivery) nothing is read and no \Recent is claimed
            self.sync()

    # -- file access --------------------------------------------------------------------
    def _stat_sig(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _open(self, write: bool) -> int:
        try:
            return os.open(self.path, os.O_RDWR if write else os.O_RDONLY)
        except FileNotFoundError:
            raise MailboxNotFound(self.name) from None

    def _lock(self, fd: int, write: bool) -> MboxLock:
        s = self.mlist.settings
        return MboxLock(self.path, fd, s.write_locks if write else s.read_locks,
                        exclusive=write, timeout=s.lock_timeout, mode=self.mlist.file_mode)

    @staticmethod
    def _read_all(fd: int) -> bytes:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, data: bytes) -> fmt.Parsed:
        try:
            return fmt.parse(data)
        except fmt.MboxFormatError as e:
            raise StorageError(f"Mailbox isn't a valid mbox file: {e}",
                               code="CORRUPTION") from e

    @staticmethod
    def _states(parsed: fmt.Parsed) -> tuple[list[_State], int, bool]:
        """Each message's state with valid UIDs, ascending in file order; the last UID; whether
        the file must be written for them (missing/invalid X-UID or X-IMAPbase). A message
        without a usable X-UID (new mail from an MTA, or a UID not above the previous one)
        gets the next free UID, as Dovecot numbers them."""
        last = parsed.last_uid
        need = parsed.uidvalidity == 0 and bool(parsed.records)
        out = []
        prev = 0
        for r in parsed.records:
            uid = r.uid
            if not (uid and prev < uid <= last):
                last = max(last, prev) + 1
                uid = last
                need = True
            prev = uid
            out.append(_State(uid, r.bits, r.keywords, r.old))
        return out, max(last, prev), need

    def _write(self, fd: int, old: bytes, new: bytes) -> None:
        """Rewrite the file in place from the first differing byte."""
        n = min(len(old), len(new))
        i = 0
        step = 1 << 16
        while i < n and old[i:i + step] == new[i:i + step]:
            i += step
        while i < n and old[i] == new[i]:
            i += 1
        if i == len(old) == len(new):
            return
        os.lseek(fd, i, os.SEEK_SET)
        view = memoryview(new)[i:]
        while view:
            view = view[os.write(fd, view):]
        os.ftruncate(fd, len(new))
        if self.mlist.fsync != "never":
            os.fsync(fd)

    def _base(self, parsed: fmt.Parsed, last: int, keywords: Sequence[str]
              ) -> tuple[int, int, Sequence[str]]:
        uidv = parsed.uidvalidity or self.uidvalidity or int(time.time())
        return uidv, last, keywords

    def sync(self) -> SyncChanges:
        old_uids = list(self.uids)
        got = self._refresh_view()
        if got is None:
            return SyncChanges([], 0, [])
        parsed, states, data = got
        uidv = parsed.uidvalidity
        if self.uidvalidity and uidv and uidv != self.uidvalidity and old_uids:
            self._apply(parsed, states, data)
            return SyncChanges([], 0, [], uidvalidity_changed=True)
        old_flags = dict(zip(old_uids, self.flags, strict=True))
        old_mod = dict(zip(old_uids, self.modseqs, strict=True))
        new_set = {s.uid for s in states}
        expunged = [u for u in old_uids if u not in new_set]
        expunged_seqs = tuple(i + 1 for i, u in enumerate(old_uids) if u not in new_set)
        self._apply(parsed, states, data)
        top = old_uids[-1] if old_uids else 0
        changed = []
        bump = False
        mods = array("Q")
        for uid, bits in zip(self.uids, self.flags, strict=True):
            if uid <= top:
                if old_flags.get(uid) != bits:
                    changed.append(uid)
                    bump = True
                    mods.append(self.highestmodseq + 1)
                else:
                    mods.append(old_mod.get(uid, 1))
            else:
                bump = True
                mods.append(self.highestmodseq + 1)
        if bump or expunged:
            self.highestmodseq += 1
        self.modseqs = mods
        new = sum(1 for u in self.uids if u > top)
        return SyncChanges(expunged, new, changed, False, expunged_seqs)

    def _pending_states(self, uidvalidity: int) -> tuple[int, dict[int, State]]:
        """The user's pending changes of this mbox (mbox_lazy_writes) and their version."""
        if self._pending is None:
            return 0, {}
        return self._pending.get(self.path, uidvalidity)

    @staticmethod
    def _overlay(states: list[_State], changes: dict[int, State]) -> list[_State]:
        if not changes:
            return states
        return [s._replace(bits=c[0], keywords=c[1]) if (c := changes.get(s.uid)) else s
                for s in states]

    def _refresh_view(self) -> tuple[fmt.Parsed, list[_State], bytes] | None:
        sig = self._stat_sig()
        pver = self._pending.version(self.path) if self._pending is not None else 0
        if sig == self._sig and pver == self._pver:
            return None
        write = not self.readonly
        fd = self._open(write)
        try:
            with self._lock(fd, write=False):
                data = self._read_all(fd)
            parsed = self._parse(data)
            states, last, need = self._states(parsed)
            fresh = {s.uid for s in states if not s.old}
            if write and (need or fresh):
                try:
                    lock = self._lock(fd, write=True).acquire()
                except LockTimeout:
                    if need:
                        raise
                    lock = None  # only O marks wait: written when the file next changes
            else:
                lock = None
            if lock is not None:
                try:
                    data = self._read_all(fd)
                    parsed = self._parse(data)
                    states, last, _ = self._states(parsed)
                    fresh = {s.uid for s in states if not s.old}
                    # a write sync: pending flag changes go into the file too
                    ver, changes = self._pending_states(parsed.uidvalidity)
                    marked = self._overlay([s._replace(old=True) for s in states], changes)
                    kws = list(parsed.keywords)
                    for s in marked:
                        kws.extend(k for k in s.keywords if k not in kws)
                    new = fmt.rewrite(data, parsed.records, marked,
                                      self._base(parsed, last, kws))
                    self._write(fd, data, new)
                    if changes and self._pending is not None:
                        self._pending.written(self.path, ver)
                    data = new
                    parsed = self._parse(data)
                    states, _, _ = self._states(parsed)
                finally:
                    lock.release()
            # the first session that sees a message without O owns its \Recent
            self._recent |= fresh
            self._sig = self._stat_sig()
        finally:
            os.close(fd)
        self._pver, changes = self._pending_states(parsed.uidvalidity)
        return parsed, self._overlay(states, changes), data

    def _apply(self, parsed: fmt.Parsed, states: list[_State], data: bytes) -> None:
        kws = self.keywords
        for k in parsed.keywords:
            if k not in kws:
                kws.append(k)
        index = {k: i for i, k in enumerate(kws)}
        uids = array("I")
        flags: list[int] = []
        msgs: dict[int, _Msg] = {}
        for st, rec in zip(states, parsed.records, strict=True):
            bits = st.bits
            for k in st.keywords:
                i = index.get(k)
                if i is None:
                    i = index[k] = len(kws)
                    kws.append(k)
                bits |= F.keyword_bit(i)
            uids.append(st.uid)
            flags.append(bits)
            msgs[st.uid] = _Msg(rec, rec.internal_date, _vsize(data, rec))
        self.uids = uids
        self.flags = flags
        self._msgs = msgs
        if parsed.uidvalidity:
            self.uidvalidity = parsed.uidvalidity
        elif not self.uidvalidity:
            # an empty file has no X-IMAPbase yet: the first append writes this one
            self.uidvalidity = int(os.stat(self.path).st_mtime) or int(time.time())
        last = max(parsed.last_uid, uids[-1] if uids else 0)
        self.uidnext = last + 1
        self._recent &= set(uids)

    def status(self) -> MailboxStatus:
        self.sync()
        unseen = sum(1 for b in self.flags if not b & F.SEEN)
        deleted = sum(1 for b in self.flags if b & F.DELETED)
        size = sum(m.vsize for m in self._msgs.values())
        return MailboxStatus(len(self.uids), len(self._recent), self.uidnext,
                             self.uidvalidity, unseen, self.highestmodseq, size, deleted)

    def recent_uids(self) -> list[int]:
        return sorted(self._recent)

    def details(self, uids: Sequence[int]) -> list[MessageDetails]:
        out = []
        for uid in uids:
            seq = self.seq_of(uid)
            m = self._msgs.get(uid)
            if seq is None or m is None:
                continue
            out.append(MessageDetails(uid, self.flags[seq - 1], self.modseqs[seq - 1],
                                      m.idate, m.rec.size, m.vsize))
        return out

    # -- message bytes --------------------------------------------------------------------
    def _current(self) -> tuple[bytes, dict[int, fmt.Record]]:
        """The file now, with its UIDs (without changing this view)."""
        fd = self._open(False)
        try:
            with self._lock(fd, write=False):
                data = self._read_all(fd)
        finally:
            os.close(fd)
        parsed = self._parse(data)
        states, _, _ = self._states(parsed)
        return data, {s.uid: r for s, r in zip(states, parsed.records, strict=True)}

    def open_message(self, uid: int) -> BinaryIO:
        m = self._msgs.get(uid)
        if m is None:
            raise MessageGone(uid)
        if self._stat_sig() == self._sig:
            fd = self._open(False)
            try:
                with self._lock(fd, write=False):
                    os.lseek(fd, m.rec.from_off, os.SEEK_SET)
                    want = m.rec.body_end - m.rec.from_off
                    chunk = os.read(fd, want)
            finally:
                os.close(fd)
            if len(chunk) == want:
                shifted = m.rec._replace(
                    kept=tuple((a - m.rec.from_off, b - m.rec.from_off) for a, b in m.rec.kept),
                    body_off=m.rec.body_off - m.rec.from_off, body_end=want)
                return io.BytesIO(fmt.visible(chunk, shifted))
        data, recs = self._current()
        rec = recs.get(uid)
        if rec is None:
            raise MessageGone(uid)
        return io.BytesIO(fmt.visible(data, rec))

    # -- changes --------------------------------------------------------------------------
    def _modify(self, change: dict[int, tuple[int, tuple[str, ...]]] | None,
                expunge: set[int] | None) -> list[int]:
        """Under the write lock: new (bits, keywords) for some UIDs and/or expunges."""
        fd = self._open(True)
        done: list[int] = []
        try:
            with self._lock(fd, write=True):
                data = self._read_all(fd)
                parsed = self._parse(data)
                states, last, _ = self._states(parsed)
                # every rewrite is a write sync: the pending changes are written with it
                ver, pending = self._pending_states(parsed.uidvalidity)
                states = self._overlay(states, pending)
                recs = []
                out_states = []
                for st, rec in zip(states, parsed.records, strict=True):
                    if expunge is not None and st.uid in expunge:
                        done.append(st.uid)
                        continue
                    if change is not None and st.uid in change:
                        bits, kws = change[st.uid]
                        if (bits, kws) != (st.bits, st.keywords):
                            done.append(st.uid)
                        st = st._replace(bits=bits, keywords=kws)
                    recs.append(rec)
                    out_states.append(st)
                kws_all = list(parsed.keywords)
                for s in out_states:
                    kws_all.extend(k for k in s.keywords if k not in kws_all)
                new = fmt.rewrite(data, recs, out_states, self._base(parsed, last, kws_all))
                self._write(fd, data, new)
                if pending and self._pending is not None:
                    self._pending.written(self.path, ver)
        finally:
            os.close(fd)
        return done

    def begin_append(self) -> AppendTransaction:
        if self.readonly:
            raise ReadOnly()
        return MboxAppend(self)

    def store(self, uids: Sequence[int], mode: str, flags: Iterable[str],
              unchangedsince: int | None = None) -> StoreResult:
        if self.readonly:
            raise ReadOnly()
        if mode not in ("+", "-", "="):
            raise ValueError(f"bad store mode {mode!r}")
        sys_bits, names = parse_flags(flags)
        modified: list[int] = []
        change: dict[int, tuple[int, tuple[str, ...]]] = {}
        differs: list[int] = []
        for uid in uids:
            seq = self.seq_of(uid)
            if seq is None:
                continue
            if unchangedsince is not None and self.modseqs[seq - 1] > unchangedsince:
                modified.append(uid)
                continue
            cur = self.flags[seq - 1]
            cur_sys = cur & F.SYSTEM_MASK
            cur_kws = [self.keywords[i] for i in F.keyword_indexes(cur)]
            if mode == "+":
                nb, nk = cur_sys | sys_bits, cur_kws + [k for k in names if k not in cur_kws]
            elif mode == "-":
                nb, nk = cur_sys & ~sys_bits, [k for k in cur_kws if k not in names]
            else:
                nb, nk = sys_bits, list(names)
            change[uid] = (nb, tuple(nk))
            if (nb, set(nk)) != (cur_sys, set(cur_kws)):
                differs.append(uid)
        lazy = self._store_lazily({u: change[u] for u in differs})
        done = differs if lazy else self._modify(change, None) if change else []
        # the view shows our own change at once
        index = {k: i for i, k in enumerate(self.keywords)}
        if done:
            self.highestmodseq += 1
        for uid in done:
            nb, new_kws = change[uid]
            for k in new_kws:
                if k not in index:
                    index[k] = len(self.keywords)
                    self.keywords.append(k)
            bits = nb
            for k in new_kws:
                bits |= F.keyword_bit(index[k])
            seq = self.seq_of(uid)
            assert seq is not None
            self.flags[seq - 1] = bits
            self.modseqs[seq - 1] = self.highestmodseq
        if done and not lazy:
            # the rewrite moved offsets: re-read them without changing the view's flags
            self._sig = None
            self._reoffset()
        return StoreResult(done, modified)

    def _store_lazily(self, change: dict[int, State]) -> bool:
        """mbox_lazy_writes: keep the changes pending (False: write them now)."""
        if self._pending is None or not change:
            return self._pending is not None
        try:
            before, after = self._pending.put(self.path, self.uidvalidity, change)
        except (sqlite3.Error, OSError) as e:
            log.warning("mbox %s: pending changes not kept (%s): writing them now",
                        self.path, e)
            return False
        if before == self._pver:
            self._pver = after  # nobody else's change in between: the view is current
        return True

    def flush(self) -> None:
        """A full write sync: pending flag changes into the file (CHECK, close)."""
        if self.readonly or self._pending is None:
            return
        try:
            if not self._pending.has(self.path):
                return
        except (sqlite3.Error, OSError):
            return
        self._modify(None, None)
        self._sig = None
        self._reoffset()

    def _reoffset(self) -> None:
        _, recs = self._current()
        for uid, rec in recs.items():
            m = self._msgs.get(uid)
            if m is not None:
                self._msgs[uid] = m._replace(rec=rec)
        self._sig = self._stat_sig()

    def expunge(self, uids: Sequence[int] | None = None) -> list[int]:
        if self.readonly:
            raise ReadOnly()
        _, recs = self._current()
        _, pending = self._pending_states(self.uidvalidity)
        deleted = {u for u, r in recs.items()
                   if (pending[u][0] if u in pending else r.bits) & F.DELETED}
        if uids is not None:
            deleted &= set(uids)
        if not deleted:
            self.flush()  # EXPUNGE is a full write sync even when nothing goes
        return self._expunge_uids(sorted(deleted))

    def _expunge_uids(self, uids: Sequence[int]) -> list[int]:
        if not uids:
            return []
        sizes = {u: self._msgs[u].rec.size for u in uids if u in self._msgs}
        done = self._modify(None, set(uids))
        if done:
            self.mlist.quota.changed(self.name, -sum(sizes.get(u, 0) for u in done),
                                     -len(done))
        return sorted(done)

    def copy(self, uids: Sequence[int], dest: Mailbox) -> list[tuple[int, int]]:
        tx = dest.begin_append()
        src: list[int] = []
        with tx:
            for d in self.details(uids):
                with self.open_message(d.uid) as f:
                    tx.add(f, self.flag_names(d.flags), d.internal_date)
                src.append(d.uid)
            return list(zip(src, tx.commit(), strict=True))

    def cache_get(self, uid: int, field: str) -> bytes | None:
        return self._cache.get((uid, field))

    def cache_put(self, uid: int, field: str, value: bytes) -> None:
        self._cache[(uid, field)] = value

    def watch(self) -> ChangeWatcher:
        return watch([os.path.dirname(self.path) or "."])

    def close(self) -> None:
        self._cache.clear()
        try:
            self.flush()
        except StorageError as e:
            # a lock we could not get: the changes stay pending for the next write sync
            log.warning("mbox %s: pending changes not written at close: %s", self.path, e)


@os_errors_as_storage_errors
class MboxAppend(AppendTransaction):
    """Messages are kept until ``commit``, which appends them under the write lock."""

    def __init__(self, box: MboxMailbox) -> None:
        self.box = box
        self.pending: list[tuple[bytes, int, tuple[str, ...], float]] = []

    def add(self, data: bytes | BinaryIO, flags: Iterable[str] = (),
            internal_date: float | None = None) -> None:
        raw = data if isinstance(data, bytes | bytearray) else data.read()
        bits, kws = parse_flags(flags)
        when = internal_date if internal_date is not None else time.time()
        self.pending.append((fmt.to_lf(bytes(raw)), bits, tuple(kws), when))

    def commit(self) -> list[int]:
        box = self.box
        if not self.pending:
            return []
        total = sum(len(p[0]) for p in self.pending)
        if not box.moving_in:
            box.mlist.quota.check(box.name, total, len(self.pending))
        sender = f"{box.mlist.user}@{_HOST}" if box.mlist.user else "MAILER-DAEMON"
        fd = box._open(True)
        uids: list[int] = []
        try:
            with box._lock(fd, write=True):
                data = box._read_all(fd)
                parsed = box._parse(data)
                states, last, need = box._states(parsed)
                kws_all = list(parsed.keywords)
                for s in states:
                    kws_all.extend(k for k in s.keywords if k not in kws_all)
                new_kws = [k for p in self.pending for k in p[2] if k not in kws_all]
                for k in new_kws:
                    if k not in kws_all:
                        kws_all.append(k)
                uid = last + 1
                entries: list[bytes] = []
                for raw, bits, kws, when in self.pending:
                    base = box._base(parsed, uid + len(self.pending) - 1, kws_all) \
                        if not states and not entries else None
                    entries.append(fmt.entry(sender, when, raw, uid=uid, bits=bits, keywords=kws,
                                             old=False, base=base))
                    uids.append(uid)
                    uid += 1
                last = uids[-1]
                if states and (need or new_kws or parsed.base_field is None
                               or parsed.base_field[1] - parsed.base_field[0] != 10):
                    # the first message's X-IMAPbase must change: rewrite the header part
                    head = fmt.rewrite(data, parsed.records, states,
                                       box._base(parsed, last, kws_all))
                    new = head + b"".join(entries)
                    box._write(fd, data, new)
                else:
                    tail = b"".join(entries)
                    if data and not data.endswith(b"\n\n"):
                        tail = (b"\n" if data.endswith(b"\n") else b"\n\n") + tail
                    os.lseek(fd, 0, os.SEEK_END)
                    view = memoryview(tail)
                    while view:
                        view = view[os.write(fd, view):]
                    if parsed.base_field is not None:
                        os.lseek(fd, parsed.base_field[0], os.SEEK_SET)
                        os.write(fd, f"{last:010d}".encode())
                    if box.mlist.fsync != "never":
                        os.fsync(fd)
        finally:
            os.close(fd)
        self.pending = []
        box.mlist.quota.changed(box.name, total, len(uids))
        return uids

    def rollback(self) -> None:
        self.pending = []
