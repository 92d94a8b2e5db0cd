"""A Maildir mailbox: sync with ``dovecot-uidlist``, append, flags, expunge, copy.

Locking order, to never deadlock: the uidlist dotlock may be taken first and the index write
transaction inside it, never the other way round. Every rename or unlink of a message file
that cote does (flag change, expunge, ``new/`` -> ``cur/``) happens under the uidlist lock,
as Dovecot does it, so a scan made under the lock sees a stable directory.

Crash safety: messages are written in ``tmp/`` (fsync per ``mail_fsync``) and renamed into
``new/`` or ``cur/`` under the lock before their uidlist records are appended; a file that a
crash left without a record gets the next UID at the next sync, so a message is never lost or
doubled and no UID is reused. The uidlist is only ever appended to (whole lines, after
checking the file ends in a newline) or replaced by rename of ``dovecot-uidlist.tmp``.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress
from operator import itemgetter, methodcaller, not_
from typing import TYPE_CHECKING, BinaryIO, Generic, NamedTuple, TypeVar, cast, overload

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
from cote.storage.dotlock import Dotlock, replace_file
from cote.storage.errors import (
    MailboxNotFound,
    MessageGone,
    ReadOnly,
    StorageError,
    from_os_error,
    os_errors_as_storage_errors,
)
from cote.storage.index import BoxState, NewRows, Snapshot, bits_from_db, bits_to_db
from cote.storage.maildir import filename as fn
from cote.storage.maildir import keywords as kwfile
from cote.storage.maildir import uidlist as ulfile
from cote.storage.maildir.uidvalidity import next_uidvalidity
from cote.storage.notify import watch

if TYPE_CHECKING:
    from cote.storage.maildir.list import MaildirList

#: the internal date of a message indexed from its name alone (read from the file on demand)
UNKNOWN_DATE = -1.0
#: a directory whose mtime is this close to "now" may change again within the same mtime
#: tick (the kernel's coarse clock): its signature is not trusted and the next sync rescans.
#: File systems with whole-second mtimes get a whole second.
DIRTY_NS = 50_000_000
DIRTY_NS_COARSE = 1_000_000_000
TMP_CHECK_SECS = 8 * 3600
TMP_MAX_AGE_SECS = 36 * 3600
_CHUNK = 1 << 16
_UNSEEN_ZERO = bytes(0xFF if i & F.SEEN else 0 for i in range(256))
"""``bytes.translate`` table: a flag byte without \\Seen -> 0x00, with it -> 0xff."""
_LOW_BYTE = 0 if sys.byteorder == "little" else 7
_IS_HIDDEN = methodcaller("startswith", ".")
_PARTITION_COLON = methodcaller("partition", ":")
_PARTITION_INFO = methodcaller("partition", fn.INFO_SEP)
_BASE = itemgetter(0)
_AFTER = itemgetter(2)
_AFTER_SIZE = itemgetter(1)
_SIZES = re.compile(r",S=(\d+),W=(\d+)\n")
"""What Dovecot ends a base name with; one match per line of the joined bases."""
_INT63 = (1 << 63) - 1


class _UidlistCache(NamedTuple):
    fd: int
    ino: int
    size: int
    mtime: int
    consumed: int  # offset after the last whole line parsed
    uidlist: ulfile.Uidlist


class Scan(NamedTuple):
    files: dict[str, str]  # base -> "new/<name>" | "cur/<name>"
    uidlist: ulfile.Uidlist | None
    slots: list[str | None]
    in_new: list[str]  # bases whose file is in new/


class Pop3Source(NamedTuple):
    """A message's POP3 facts from the uidlist (see :meth:`MaildirMailbox.pop3_sources`)."""

    base: str
    guid: str
    fast_size: int | None
    order: int | None = None  # O field: the message's place in POP3's order (migrations)
    uidl: str | None = None  # P field: a saved or migrated UIDL


class SizeCounter:
    """Counts octets and bare LFs of a stream fed in chunks: vsize = size + bare LFs."""

    __slots__ = ("bare", "prev", "size")

    def __init__(self) -> None:
        self.size = self.bare = 0
        self.prev = b""

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.bare += chunk.count(b"\n") - chunk.count(b"\r\n")
        if self.prev == b"\r" and chunk[:1] == b"\n":
            self.bare -= 1
        self.prev = chunk[-1:]

    @property
    def vsize(self) -> int:
        return self.size + self.bare


def count_vsize(f: BinaryIO) -> tuple[int, int]:
    """``(size, vsize)`` of a stream: vsize counts every bare LF as CRLF."""
    counter = SizeCounter()
    while chunk := f.read(_CHUNK):
        counter.feed(chunk)
    return counter.size, counter.vsize


T = TypeVar("T")


class _Column(Generic[T]):
    """A column of the view (``uids``, ``flags``, ``modseqs``): the first read unpacks a
    snapshot the view still holds packed; assigning one drops that snapshot."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    @overload
    def __get__(self, box: None, owner: type) -> _Column[T]: ...

    @overload
    def __get__(self, box: MaildirMailbox, owner: type) -> T: ...

    def __get__(self, box: MaildirMailbox | None, owner: type) -> T | _Column[T]:
        if box is None:
            return self
        if box._packed is not None:
            box._unpack()
        value: T = getattr(box, self.slot)  # (no typing.cast call: this runs per element)
        return value

    def __set__(self, box: MaildirMailbox, value: T) -> None:
        box._drop_packed()
        setattr(box, self.slot, value)


def _same_files(index_sig: str, disk_sig: str) -> bool:
    """Whether two disk signatures have the same uidlist and dovecot-keywords (only the
    directories' times, or the dirty mark, differ): the index then has every record of
    the uidlist on disk, and a listing that names exactly its files needs nothing else."""
    index_parts = index_sig.removeprefix("dirty:").split(":")
    disk_parts = disk_sig.removeprefix("dirty:").split(":")
    return len(index_parts) == len(disk_parts) == 4 and index_parts[2:] == disk_parts[2:]


@os_errors_as_storage_errors
class MaildirMailbox(Mailbox):
    #: expunged records left in dovecot-uidlist before it is rewritten without them
    rewrite_min_dead = 64

    def __init__(self, mlist: MaildirList, name: str, parts: tuple[str, ...],
                 readonly: bool, *, sync: bool = True, claim_recent: bool = True) -> None:
        self.mlist = mlist
        self.name = name
        self.readonly = readonly
        self.claims_recent = claim_recent
        """False for a view that only saves (``open_for_saving``): SELECT claims \\Recent."""
        layout = mlist.layout
        self.path = layout.mail_dir(parts)
        self.control = layout.control_dir(parts)
        self.key = layout.relative(parts)
        self.uidlist_path = os.path.join(self.control, ulfile.NAME)
        self.keywords_path = os.path.join(self.control, kwfile.NAME)
        self.index = mlist.index
        self.scans = 0  # full directory scans done by this view (tests prove no-op syncs)
        self._built: tuple[int, int, array[int], list[int]] | None = None
        """``(uidvalidity, modseq, uids, flags)`` of a box ``_insert_all`` just indexed whole:
        the first view load takes them instead of reading the rows back."""
        self._packed: Snapshot | None = None
        """A snapshot not unpacked yet: the view until ``uids``/``flags``/``modseqs`` are
        first touched (SELECT itself needs only its count and first unseen message)."""
        self.uids = array("I")
        self.flags = []
        self.modseqs = array("Q")
        self.keywords = []
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 1
        self._view_modseq = -1
        self._unseen_hint: tuple[int, int] | None = None
        """``(uid, seq)`` of the view's first unseen message (``(0, 0)``: none), known from a
        packed load without walking 100k flags; None when unknown. Every change of ``flags``
        clears it."""
        self._recent: list[tuple[int, int]] = []
        self._own_append: tuple[int, int, list[tuple[int, int | str, int]]] | None = None
        """``(view modseq before, modseq, rows as changed_since gives them)`` of an append
        through this view that found it current: the next refresh takes the rows from here
        when they are the only change since (the sync after APPEND reads no rows)."""
        self._ul_cache: _UidlistCache | None = None
        self._moves_new = not readonly or mlist.settings.empty_new
        self.private = mlist.private
        """INDEXPVT: \\Seen comes from the accessing user's own store, not the owner's."""
        self._pvt_seen: set[int] = set()
        self._pvt_version = -1
        state = self.index.box(self.key)
        assert state is not None
        self._box = state.id
        self._known_sig: str | None = state.sig if sync else None
        """The index's signature as just read: the sync right below compares with it."""
        if sync:
            self.sync()

    # -- the view's columns (unpacked on first use) ---------------------------------------
    uids = _Column["array[int]"]()
    flags = _Column[list[int]]()
    modseqs = _Column["array[int]"]()
    _uids: array[int]
    _flags: list[int]
    _modseqs: array[int]

    def __len__(self) -> int:
        packed = self._packed
        return packed.count if packed is not None else len(self._uids)

    def seq_of(self, uid: int) -> int | None:
        if self._packed is not None:
            self._unpack()
        uids = self._uids
        i = bisect_left(uids, uid)
        return i + 1 if i < len(uids) and uids[i] == uid else None

    def _drop_packed(self) -> None:
        if self._packed is not None:
            self._packed.close()
            self._packed = None

    def _unpack(self) -> bytes:
        """The view's columns from the snapshot; returns its packed flags."""
        snap = self._packed
        assert snap is not None
        self._packed = None
        try:
            uid_bytes, flag_bytes, modseq_bytes = snap.columns()
        except OSError as e:
            self._uids, self._flags, self._modseqs = array("I"), [], array("Q")
            self._view_modseq = -1  # the next sync loads the view again
            raise from_os_error(e) from e
        self._uids = array("I")
        self._uids.frombytes(uid_bytes)
        flag_arr = array("B" if snap.flag_width == 1 else "Q")
        flag_arr.frombytes(flag_bytes)
        self._flags = flag_arr.tolist()
        self._modseqs = array("Q")
        self._modseqs.frombytes(modseq_bytes)
        return flag_bytes

    # -- paths and locks ----------------------------------------------------------------
    def _full(self, fname: str) -> str:
        return os.path.join(self.path, fname)

    def _lock(self) -> Dotlock:
        wait = self.mlist.settings.max_lock_timeout
        if wait > 0:
            return Dotlock(self.uidlist_path, mode=self.mlist.file_mode, timeout=wait)
        return Dotlock(self.uidlist_path, mode=self.mlist.file_mode)

    def _sig_kept(self, before: str, state: BoxState) -> dict[str, str]:
        """Inside the index transaction after cote's own change (``before``: the disk
        signature taken under the lock before it, ``state``: the box read in this
        transaction): if the index was up to date with the disk then, it still is, and the
        returned ``sig`` column value (merged into the caller's UPDATE) says so -- the next
        command's sync need not list the mailbox again (four listings per IMAP session of
        STORE, APPEND, EXPUNGE before). As Dovecot after its own renames (its "delayed
        refresh"), the signature is kept dirty unless ``maildir_very_dirty_syncs``: it
        matches while the directories keep changing, and the first sync after they have
        been quiet for the dirty window lists the mailbox once, for a change another writer
        may have made in the same clock tick as ours. Empty: the next sync scans."""
        if state.sig != before:
            return {}
        sig = self._disk_sig().removeprefix("dirty:")
        if not self.mlist.settings.very_dirty_syncs:
            sig = "dirty:" + sig
        return {"sig": sig}

    def _disk_sig(self) -> str:
        parts: list[str] = []
        now = time.time_ns()
        dirty = False
        for sub in ("new", "cur"):
            mtime = os.stat(os.path.join(self.path, sub)).st_mtime_ns
            parts.append(str(mtime))
            window = DIRTY_NS_COARSE if mtime % 1_000_000_000 == 0 else DIRTY_NS
            if now - mtime < window:
                dirty = True
        for p in (self.uidlist_path, self.keywords_path):
            try:
                st = os.stat(p)
                parts.append(f"{st.st_ino}.{st.st_size}.{st.st_mtime_ns}")
            except FileNotFoundError:
                parts.append("-")
        # a dirty signature never matches: the next sync scans again (with
        # maildir_very_dirty_syncs only cote and Dovecot write here: no same-tick surprises)
        if dirty and not self.mlist.settings.very_dirty_syncs:
            return "dirty:" + ":".join(parts)
        return ":".join(parts)

    def _scan(self, listed: tuple[dict[str, str], list[str]] | None = None) -> Scan:
        """The listing (``listed``, else a new one), the uidlist and the keyword slots."""
        files, in_new = listed if listed is not None else self._list_files()
        return Scan(files, self._read_uidlist(), self._read_slots(), in_new)

    def _list_files(self) -> tuple[dict[str, str], list[str]]:
        """Both directories' names by base (``cur/`` wins over ``new/``) and the bases
        whose file is in ``new/``, built with C-level ``map``s: a 100k-message Maildir is
        listed in tens of milliseconds."""
        self.scans += 1
        files: dict[str, str] = {}
        in_new: list[str] = []
        for sub in ("new", "cur"):
            names = os.listdir(os.path.join(self.path, sub))
            if any(map(_IS_HIDDEN, names)):
                names = [n for n in names if n[:1] != "."]
            bases = list(map(_BASE, map(_PARTITION_COLON, names)))
            files.update(zip(bases, map((sub + "/").__add__, names), strict=True))
            if sub == "new":
                in_new = bases
        in_new = [b for b in dict.fromkeys(in_new) if files[b][:4] == "new/"]
        return files, in_new

    def _read_uidlist(self) -> ulfile.Uidlist | None:
        """The uidlist (a private copy), parsing only what was appended since the last read.

        The cache keeps the parsed file open: while that fd pins its inode, an equal inode
        number at the path can only be the same file (appended to), never a reused number.
        """
        try:
            st = os.stat(self.uidlist_path)
        except FileNotFoundError:
            self._drop_uidlist_cache()
            return None
        cache = self._ul_cache
        if cache is not None and cache.ino == st.st_ino and cache.size <= st.st_size:
            if cache.size < st.st_size or cache.mtime != st.st_mtime_ns:
                tail = os.pread(cache.fd, st.st_size - cache.consumed, cache.consumed)
                ul = ulfile.copy(cache.uidlist)
                end = tail.rfind(b"\n") + 1
                ulfile.parse_records(ul, tail[:end].decode("utf-8", "surrogateescape"))
                cache = cache._replace(size=st.st_size, mtime=st.st_mtime_ns,
                                       consumed=cache.consumed + end, uidlist=ul)
                self._ul_cache = cache
            return ulfile.copy(cache.uidlist)
        try:
            fd = os.open(self.uidlist_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._drop_uidlist_cache()
            return None
        st = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
        self._drop_uidlist_cache()
        try:
            ul = ulfile.parse(data)
        except ulfile.UidlistError:
            os.close(fd)
            return None
        self._ul_cache = _UidlistCache(fd, st.st_ino, len(data), st.st_mtime_ns,
                                       data.rfind(b"\n") + 1, ul)
        return ulfile.copy(ul)

    def _drop_uidlist_cache(self) -> None:
        if self._ul_cache is not None:
            os.close(self._ul_cache.fd)
            self._ul_cache = None

    def _read_slots(self) -> list[str | None]:
        try:
            with open(self.keywords_path, "rb") as f:
                return kwfile.parse(f.read())
        except FileNotFoundError:
            return [None] * kwfile.MAX

    # -- sync ---------------------------------------------------------------------------
    def sync(self) -> SyncChanges:
        """Bring the index up to date with the disk (if it changed), then this view."""
        self.sync_disk()
        return self._refresh_view()

    def sync_disk(self) -> None:
        """Bring the index up to date with the disk (if it changed); the view is left as is."""
        try:
            self._sync_disk()
        except FileNotFoundError:
            # the mailbox was deleted or renamed under this session
            raise MailboxNotFound(self.name) from None

    def _needs_lock(self, scan: Scan, known: dict[int, str]) -> bool:
        ul = scan.uidlist
        if ul is None:
            return True
        by_base = ul.by_base()
        if not by_base.keys() >= scan.files.keys():
            return True  # a file without a UID
        if self._moves_new and scan.in_new:
            return True
        return not set(map(by_base.__getitem__, scan.files)).issuperset(known)

    def _sync_disk(self) -> None:
        sig = self._disk_sig()
        index_sig, self._known_sig = self._known_sig, None
        if index_sig is None:
            index_sig = self.index.box_sig(self.key)
        if index_sig == sig:
            return
        with self.index.write():
            state = self.index.box(self.key)
            assert state is not None
            if state.sig == sig:
                return
            # without a uidlist (a cold first sync) or with mail to move out of new/ (after a
            # delivery) the lock is needed anyway: scan once, there
            if os.path.exists(self.uidlist_path) and not self._mail_to_move():
                listed = self._list_files()
                known = self.index.files(self._box)
                if _same_files(state.sig, sig) and \
                        len(listed[0]) == len(known) and set(listed[0].values()) == \
                        set(known.values()):
                    # the directories' times moved, not their names (the quiet refresh
                    # after cote's own changes): nothing to apply, no uidlist to read
                    self.index.update_box(self._box, sig=sig, scans=state.scans + 1)
                    return
                scan = self._scan(listed)
                if not self._needs_lock(scan, known):
                    self._apply(scan, sig, known, state)
                    return
        # files without a UID, files to move to cur/, or files gone: decide under the lock,
        # where every writer that follows Dovecot's protocol is kept out
        with self._lock() as lock:
            sig = self._disk_sig()
            scan = self._fix_locked(self._scan(), lock)
            if self.mlist.settings.very_dirty_syncs:
                sig = self._disk_sig()  # our own changes are the only ones: trust them
            with self.index.write():
                self._apply(scan, sig, self.index.files(self._box))

    def _mail_to_move(self) -> bool:
        """Whether ``new/`` holds mail this view moves to ``cur/`` (a sync then takes the
        lock whatever else it finds: no need to list the whole mailbox without it first)."""
        if not self._moves_new:
            return False
        with os.scandir(os.path.join(self.path, "new")) as it:
            return any(e.name[:1] != "." for e in it)

    def _fix_locked(self, scan: Scan, lock: Dotlock) -> Scan:
        """Under the uidlist lock: create the uidlist, give files UIDs, move new/ -> cur/."""
        ul = scan.uidlist
        rewrite = False
        if ul is None:
            ul = ulfile.Uidlist(uidvalidity=self._new_uidvalidity(), guid=ulfile.new_guid())
            rewrite = True
        by_base = ul.by_base()
        fresh = sorted(b for b in scan.files if b not in by_base) if by_base \
            else sorted(scan.files)
        start = len(ul.uids)
        ul.extend(ul.real_next_uid, fresh)
        files = dict(scan.files)
        in_new = scan.in_new
        if self._moves_new:
            for base in in_new:
                lock.touch()
                fname = scan.files[base]
                name = fname[4:]
                dest = f"cur/{name}" if fn.INFO_SEP in name else f"cur/{name}{fn.INFO_SEP}"
                try:
                    os.rename(self._full(fname), self._full(dest))
                    files[base] = dest
                except FileNotFoundError:
                    files.pop(base, None)
            in_new = []
        if rewrite:
            self._write_uidlist(ul)
        elif fresh:
            self._append_uidlist(ul, start)
        if not self.readonly:
            self._clean_tmp()
        return Scan(files, ul, scan.slots, in_new)

    def _clean_tmp(self) -> None:
        """Remove what crashed writers left in ``tmp/`` (older than 36 h), checking at most
        every 8 h (the dir's atime records the last check), as Dovecot does."""
        tmp = os.path.join(self.path, "tmp")
        try:
            st = os.stat(tmp)
        except FileNotFoundError:
            return
        now = time.time()
        if now - st.st_atime < TMP_CHECK_SECS:
            return
        with os.scandir(tmp) as it:
            for e in it:
                try:
                    est = e.stat(follow_symlinks=False)
                    if now - est.st_mtime > TMP_MAX_AGE_SECS:
                        os.unlink(e.path)
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    pass
        os.utime(tmp, (now, st.st_mtime))

    def _new_uidvalidity(self) -> int:
        return next_uidvalidity(self.mlist.uidvalidity_dir, self.mlist.file_mode)

    def _write_uidlist(self, ul: ulfile.Uidlist) -> None:
        if not ul.complete:  # the records an append added to a header read alone
            full = self._read_uidlist()
            if full is None:  # deleted under the lock: the index had every record of it
                full = ulfile.Uidlist(uidvalidity=ul.uidvalidity, next_uid=ul.next_uid,
                                      guid=ul.guid, header_extra=ul.header_extra)
                for uid, fname in self.index.files(self._box).items():
                    full.add(uid, fn.base_of(fname[4:]))
            for uid, ext, base in zip(ul.uids, ul.exts, ul.bases, strict=True):
                full.add(uid, base, ext)
            ul = full
        if not ul.guid:
            ul.guid = ulfile.new_guid()  # a converted version 1 file gets a mailbox GUID
        tmp = self.uidlist_path + ".tmp"
        fd = self.mlist.create_file(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, ulfile.format(ul))
            if self.mlist.fsync != "never":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.uidlist_path)

    def _append_uidlist(self, ul: ulfile.Uidlist, start: int) -> None:
        if ul.version != 3:
            self._write_uidlist(ul)  # an old version 1 file is converted, never extended
            return
        data = ulfile.format_records(ul.uids[start:], ul.exts[start:], ul.bases[start:])
        try:
            fd = os.open(self.uidlist_path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            self._write_uidlist(ul)
            return
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) != b"\n":
                os.close(fd)
                fd = -1
                self._write_uidlist(ul)  # a torn last line: rewrite rather than extend it
                return
            os.write(fd, data)
            if self.mlist.fsync != "never":
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)

    def _uidlist_header(self, sig: str) -> ulfile.Uidlist | None:
        """Under the lock, for an append by a process that has not read the uidlist: its
        header alone (``complete`` False) when the index has every record of it (``sig``,
        the disk signature taken under the lock, has the uidlist the index's has): the
        index's UIDNEXT is then the uidlist's next UID, and no record need be parsed.
        None: read the whole file."""
        if self._ul_cache is not None:
            return None  # parsed already: only what was appended since is read
        state = self.index.box(self.key, create=False)
        if state is None or not _same_files(state.sig, sig):
            return None
        try:
            fd = os.open(self.uidlist_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            first, nl, _ = os.pread(fd, 4096, 0).partition(b"\n")
        finally:
            os.close(fd)
        try:
            ul = ulfile.parse_header(first.decode("utf-8", "surrogateescape"))
        except ulfile.UidlistError:
            return None
        if not nl or ul.version != 3 or ul.uidvalidity != state.uidvalidity:
            return None
        ul.next_uid = max(ul.next_uid, state.uidnext)
        ul.complete = False
        return ul

    def _keyword_table(self) -> dict[str, int]:
        return {name.lower(): i for i, name in enumerate(self.index.keywords(self._box))}

    def _bits_from_name(self, fname: str, slots: list[str | None], table: dict[str, int],
                        old_bits: int) -> int:
        """The flag bits a file name gives; ``table`` (lower-case keyword -> index) is
        shared by the calls of one sync and read from the index at the first keyword
        letter (a sync of names without keywords reads no keyword table)."""
        _, letters = fn.split(fname[4:])
        bits, kw_letters, _ = fn.parse_flags(letters or "")
        if kw_letters and not table:
            table.update(self._keyword_table())
        for ch in kw_letters:
            name = slots[kwfile.index_of_letter(ch)]
            if name is None:
                continue
            idx = table.get(name.lower())
            if idx is None:
                idx = self.index.add_keyword(self._box, name)
                table[name.lower()] = idx
            bits |= F.keyword_bit(idx)
        if old_bits >> F.KEYWORD_SHIFT:
            in_file = {s.lower() for s in slots if s}
            names = self.index.keywords(self._box)
            for i in F.keyword_indexes(old_bits):
                if i < len(names) and names[i].lower() not in in_file:
                    bits |= F.keyword_bit(i)  # a keyword without a letter lives in the index
        return bits

    def _sizes(self, fname: str, base: str, ext: str) -> tuple[float, int, int] | None:
        """``(internal date, size, vsize)`` of a new message; the date is ``UNKNOWN_DATE``
        when the name (or uidlist) gives both sizes: like Dovecot's sync, a cold sync of
        100k messages then reads the directory only, and ``details`` stats on demand."""
        size, vsize = fn.sizes(base)
        if vsize is None:
            for fld in ext.split():
                if fld[:1] == "W" and fld[1:].isdigit():
                    vsize = int(fld[1:])
        if size is not None and vsize is not None:
            return UNKNOWN_DATE, size, vsize
        path = self._full(fname)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if vsize is None:
            try:
                with open(path, "rb") as f:
                    _, vsize = count_vsize(f)
            except FileNotFoundError:
                return None
        return st.st_mtime, size if size is not None else st.st_size, vsize

    def _apply(self, scan: Scan, sig: str, known: dict[int, str],
               state: BoxState | None = None) -> None:
        """Inside an index write transaction: make the index match the scan (``state``: the
        box as this transaction read it, if it did)."""
        if state is None:
            state = self.index.box(self.key)
            assert state is not None
        ul = scan.uidlist
        if ul is None:
            return
        if ul.uidvalidity != state.uidvalidity:
            self.index.reset_box(self._box)
            known = {}
            state = state._replace(highestmodseq=1)
        modseq = state.highestmodseq + 1
        if not known:
            added = self._insert_all(scan, ul, modseq)
            if added is not None:
                if added < 0:
                    sig = ""  # vanished while we looked: scan again next time
                self.index.update_box(
                    self._box, uidvalidity=ul.uidvalidity, uidnext=ul.real_next_uid,
                    highestmodseq=modseq if added else state.highestmodseq,
                    sig=sig, scans=state.scans + 1)
                return
        changed = False
        fnames = list(map(scan.files.get, ul.bases))
        live = cast("dict[int, str]", dict(zip(ul.uids, fnames, strict=True)))
        if None in fnames:
            live = {uid: f for uid, f in live.items() if f is not None}
        gone = sorted(known.keys() - live.keys())
        if gone:
            gone = self._confirm_gone(gone, known, live, ul)
        if gone:
            self.index.remove(self._box, gone, modseq)
            changed = True
        table: dict[str, int] = {}
        rows = []
        # only what differs from the index is looked at one by one (a rescan of 100k
        # messages after a delivery: a few)
        todo = sorted(uid for uid, _ in live.items() - known.items())
        renamed = self.index.rows(self._box, [uid for uid in todo if uid in known]) \
            if known else {}
        for uid in todo:
            fname = live[uid]
            old = renamed.get(uid)
            if uid not in known:
                i = bisect_left(ul.uids, uid)
                info = self._sizes(fname, ul.bases[i], ul.exts[i])
                if info is None:
                    sig = ""  # vanished while we looked: scan again next time
                    continue
                bits = self._bits_from_name(fname, scan.slots, table, 0)
                rows.append((uid, fname, bits_to_db(bits), modseq, *info))
            elif old is not None:  # (always: read in the transaction that read ``known``)
                old_bits = bits_from_db(old[2])
                bits = self._bits_from_name(fname, scan.slots, table, old_bits)
                if bits != old_bits:
                    self.index.set_file(self._box, uid, fname, bits, modseq)
                    changed = True
                else:
                    self.index.set_file(self._box, uid, fname, bits, None)
        if rows:
            self.index.insert(self._box, rows)
            changed = True
        self.index.update_box(
            self._box, uidvalidity=ul.uidvalidity, uidnext=ul.real_next_uid,
            highestmodseq=modseq if changed else state.highestmodseq,
            sig=sig, scans=state.scans + 1)

    def _insert_all(self, scan: Scan, ul: ulfile.Uidlist, modseq: int) -> int | None:
        """A box the index has no message of (a cold sync, a rebuilt index): every row at
        once, from C-level passes over the names (sizes from ``,S=,W=``, flags from the
        letters, one computation per distinct letter string) instead of Python per message,
        and the view's columns kept for the first load (``_built``). Returns the messages
        added (negated when some vanished while we looked), None when some name does not
        end in ``,S=<n>,W=<n>`` (the caller goes message by message)."""
        fnames: list[str | None] = list(map(scan.files.get, ul.bases))
        uids: Sequence[int] = ul.uids
        bases = ul.bases
        vanished = None in fnames
        if vanished:
            keep = [i for i, f in enumerate(fnames) if f is not None]
            uids = [ul.uids[i] for i in keep]
            bases = [bases[i] for i in keep]
            fnames = [fnames[i] for i in keep]
        count = len(fnames)
        joined = "\n".join(bases) + "\n"
        sizes = _SIZES.findall(joined)
        if len(sizes) != count or joined.count("\n") != count:
            return None
        names = cast("list[str]", fnames)
        letters = list(map(_AFTER, map(_PARTITION_INFO, names)))
        table: dict[str, int] = {}
        # in first-seen order: keywords enter the table as a message-by-message sync adds them
        bits_of = {text: self._bits_from_name(f"cur/x{fn.INFO_SEP}{text}", scan.slots, table, 0)
                   for text in dict.fromkeys(letters)}
        bits = list(map(bits_of.__getitem__, letters))
        db_bits: Sequence[int | str] = bits
        if any(b > _INT63 for b in bits_of.values()):
            db_bits = list(map(bits_to_db, bits))
        vsizes = list(map(int, map(_AFTER_SIZE, sizes)))
        unseen = deleted = 0
        for text, n in Counter(letters).items():
            unseen += n if not bits_of[text] & F.SEEN else 0
            deleted += n if bits_of[text] & F.DELETED else 0
        rows = NewRows(uids, names, db_bits, list(map(int, map(_BASE, sizes))), vsizes)
        self.index.insert_new(self._box, modseq, rows, unseen=unseen, deleted=deleted)
        self._built = (ul.uidvalidity, modseq if count else -1, array("I", uids), bits)
        return -count if vanished else count

    def _confirm_gone(self, gone: list[int], known: dict[int, str],
                      live: dict[int, str], ul: ulfile.Uidlist) -> list[int]:
        """Expunge only what is really missing: readdir can miss a file that a mail client
        renames at that moment, so check the last known name, then look once more."""
        exts = dict(zip(ul.uids, ul.exts, strict=True))
        missing = []
        for uid in gone:
            fname = known[uid]
            if uid in exts and os.path.lexists(self._full(fname)):
                live[uid] = fname
            else:
                missing.append(uid)
        if not missing:
            return []
        again = self._scan()
        confirmed = []
        for uid in missing:
            base = fn.base_of(known[uid][4:])
            found = again.files.get(base)
            if uid in exts and found is not None:
                live[uid] = found
            else:
                confirmed.append(uid)
        return confirmed

    # -- the session view ---------------------------------------------------------------
    def _refresh_view(self) -> SyncChanges:
        db = self.index.db
        db.execute("BEGIN")
        save: int | None = None
        self._unseen_hint = None
        built, self._built = self._built, None  # only ever for the load right after it
        own, self._own_append = self._own_append, None
        try:
            state = self.index.box(self.key, create=False)
            assert state is not None
            self.keywords = self.index.keywords(self._box)
            if self._view_modseq < 0 or state.uidvalidity != self.uidvalidity:
                reset = self._view_modseq >= 0
                if built is not None and built[:2] == (state.uidvalidity, state.highestmodseq):
                    self.uids, self.flags = built[2], built[3]
                    self.modseqs = array("Q", [state.highestmodseq]) * len(built[2])
                    delta = None
                else:
                    delta = self._load_snapshot(state.highestmodseq)
                if delta is None and built is None:
                    rows = self.index.messages(self._box)
                    self.uids = array("I", [r[0] for r in rows])
                    self.flags = [bits_from_db(r[1]) for r in rows]
                    self.modseqs = array("Q", [r[2] for r in rows])
                if delta is None or delta > self.snapshot_delta:
                    save = state.highestmodseq
                if self.private is not None:
                    save = None  # the snapshot holds the owner's flags, not the overlay
                    self._pvt_version = self.private.version(self.key)
                    self._pvt_seen = self.private.seen(self.key, state.uidvalidity)
                    self.flags = [self._overlay(u, b)
                                  for u, b in zip(self.uids, self.flags, strict=True)]
                    self._unseen_hint = None
                expunged: list[int] = []
                seqs: tuple[int, ...] = ()
                new = len(self)
                flag_changes: list[int] = []
            else:
                reset = False
                expunged, seqs, new, flag_changes = [], (), 0, []
                # every change raises HIGHESTMODSEQ: unchanged, there is nothing to read
                if own is not None and own[:2] == (self._view_modseq, state.highestmodseq):
                    new, flag_changes = self._apply_view_changes([], own[2])
                elif state.highestmodseq != self._view_modseq:
                    found = [(u, self.seq_of(u))
                             for u in self.index.expunged_since(self._box, self._view_modseq)]
                    expunged = [u for u, seq in found if seq is not None]
                    seqs = tuple(seq for _, seq in found if seq is not None)
                    changes = self.index.changed_since(self._box, self._view_modseq)
                    new, flag_changes = self._apply_view_changes(expunged, changes)
                if self.private is not None:
                    flag_changes = self._private_changes(state.uidvalidity, flag_changes)
            self.uidvalidity = state.uidvalidity
            self.uidnext = state.uidnext
            self.highestmodseq = state.highestmodseq
            self._view_modseq = state.highestmodseq
        finally:
            db.execute("COMMIT")
        if save is not None:
            self._save_snapshot(save)
        if not self.readonly and self.claims_recent:
            self._claim_recent(state.first_recent_uid)
        return SyncChanges(expunged, new, flag_changes, reset, seqs)

    #: a view rebuilt from more changed rows than this since its snapshot saves a new one
    snapshot_delta = 2000

    def _private_changes(self, uidvalidity: int, flag_changes: list[int]) -> list[int]:
        """INDEXPVT: take in \\Seen changes the user's other sessions made since."""
        assert self.private is not None
        version = self.private.version(self.key)
        if version == self._pvt_version:
            return flag_changes
        self._pvt_version = version
        seen = self.private.seen(self.key, uidvalidity)
        moved = seen ^ self._pvt_seen
        self._pvt_seen = seen
        self._unseen_hint = None
        changed = set(flag_changes)
        for uid in sorted(moved):
            seq = self.seq_of(uid)
            if seq is not None:
                self.flags[seq - 1] = self._overlay(uid, self.flags[seq - 1])
                changed.add(uid)
        return sorted(changed)

    def _overlay(self, uid: int, bits: int) -> int:
        """The owner's flags with this user's private \\Seen (INDEXPVT) in their place."""
        if self.private is None:
            return bits
        return (bits & ~F.SEEN) | (F.SEEN if uid in self._pvt_seen else 0)

    def _load_snapshot(self, highestmodseq: int) -> int | None:
        """Inside the view's read transaction: the view from the packed snapshot plus the
        rows changed since it (a warm SELECT of 100k messages reads no per-message rows);
        the number of changes applied, or None when there is no usable snapshot (the
        caller loads every row). Without changes the columns stay packed until used."""
        snap = self.index.snapshot(self._box)
        if snap is None:
            return None
        gone: list[int] = []
        changes: list[tuple[int, int | str, int]] = []
        if snap.modseq < highestmodseq:  # (every change raises highestmodseq to its modseq)
            gone = self.index.expunged_since(self._box, snap.modseq)
            changes = self.index.changed_since(self._box, snap.modseq)
        if snap.modseq > highestmodseq or \
                (gone and not {u for u, _, _ in changes}.isdisjoint(gone)):
            snap.close()  # newer than the index (a rebuilt one), or a UID that came back
            return None  # after its expunge: rows decide
        self._drop_packed()
        self._packed = snap
        if gone or changes:
            flag_bytes = self._unpack()
            first = self._first_unseen_after(snap, flag_bytes, gone, changes)
            if gone and self._uids:
                self._apply_view_changes([u for u in gone if self.seq_of(u) is not None], [])
            if changes:
                self._apply_view_changes([], changes)
            seq = self.seq_of(first) if first else 0
            if seq is not None:
                self._unseen_hint = (first, seq)
        elif snap.first_unseen < snap.count:
            self._unseen_hint = (snap.uid_at(snap.first_unseen), snap.first_unseen + 1)
        else:
            self._unseen_hint = (0, 0)
        return len(gone) + len(changes)

    @staticmethod
    def _unseen_zeros(flag_bytes: bytes, width: int) -> bytes:
        """One byte per message, 0x00 where it lacks \\Seen: ``find(0)`` runs at C speed."""
        low = flag_bytes if width == 1 else flag_bytes[_LOW_BYTE :: 8]
        return low.translate(_UNSEEN_ZERO)

    def _first_unseen_after(self, snap: Snapshot, flag_bytes: bytes, gone: list[int],
                            changes: list[tuple[int, int | str, int]]) -> int:
        """The UID of the first unseen message (0: none) of snapshot + changes, from the
        packed flags of the snapshot (its UIDs just unpacked into ``_uids``, before the
        changes apply); only messages the changes touched are looked at one by one."""
        seen = self._unseen_zeros(flag_bytes, snap.flag_width)
        uids = self._uids
        touched = set(gone)
        touched.update(u for u, _, _ in changes)
        pos = seen.find(0)
        while pos >= 0 and uids[pos] in touched:
            pos = seen.find(0, pos + 1)
        first = uids[pos] if pos >= 0 else 0
        for uid, bits, _ in changes:  # in UID order
            if first and uid >= first:
                break
            if not bits_from_db(bits) & F.SEEN:
                return uid
        return first

    def first_unseen(self) -> int | None:
        hint = self._unseen_hint
        if hint is not None:
            return hint[1] or None
        return super().first_unseen()

    def _save_snapshot(self, modseq: int) -> None:
        """Keep the view as of ``modseq`` packed in the index for the next full load."""
        width = 1
        try:
            flag_arr = array("B", self.flags)
        except OverflowError:
            width = 8
            try:
                flag_arr = array("Q", self.flags)
            except OverflowError:
                return  # keyword bits beyond 64: rows only
        packed = flag_arr.tobytes()
        pos = self._unseen_zeros(packed, width).find(0)
        self._unseen_hint = (self.uids[pos], pos + 1) if pos >= 0 else (0, 0)
        try:
            self.index.put_snapshot(self._box, modseq, self.uids.tobytes(), packed,
                                    flag_width=width, modseqs=self.modseqs.tobytes(),
                                    first_unseen=pos if pos >= 0 else len(self.uids))
        except (sqlite3.Error, OSError):
            pass  # a busy or read-only index: the next full load reads rows again

    #: expunges from a view up to this many are deleted in place; more rebuild the columns
    _DELETE_IN_PLACE = 16

    def _apply_view_changes(self, expunged: list[int],
                            changes: list[tuple[int, int | str, int]]) -> tuple[int, list[int]]:
        """Apply expunges (UIDs of the view, ascending) and changed rows to the columns,
        read once into locals: the column descriptors are never called per message."""
        if expunged or changes:
            self._unseen_hint = None
        if self._packed is not None:
            self._unpack()
        uids, flags, modseqs = self._uids, self._flags, self._modseqs
        if len(expunged) <= self._DELETE_IN_PLACE:
            for uid in reversed(expunged):  # (the usual case: one message, no copy)
                i = bisect_left(uids, uid)
                if i < len(uids) and uids[i] == uid:
                    del uids[i], flags[i], modseqs[i]
        else:
            keep = list(map(not_, map(set(expunged).__contains__, uids)))
            self._uids = uids = array("I", compress(uids, keep))
            self._flags = flags = list(compress(flags, keep))
            self._modseqs = modseqs = array("Q", compress(modseqs, keep))
        new = 0
        flag_changes: list[int] = []
        private = self.private is not None
        for uid, flags_db, modseq in changes:
            bits = bits_from_db(flags_db)
            if private:
                bits = self._overlay(uid, bits)
            i = bisect_left(uids, uid)
            if i < len(uids) and uids[i] == uid:
                if flags[i] != bits or modseqs[i] != modseq:
                    # changed, even if a later change restored the flags: Dovecot reports
                    # every message its transaction log shows a flag change for
                    flag_changes.append(uid)
                    flags[i] = bits
                    modseqs[i] = modseq
            elif i == len(uids):
                uids.append(uid)
                flags.append(bits)
                modseqs.append(modseq)
                new += 1
        return new, flag_changes

    def _claim_recent(self, first_recent: int) -> None:
        """The first session that sees a message gets it as \\Recent (RFC 3501);
        ``first_recent`` is the index's value read with the view (checked again inside the
        write transaction before anything is claimed)."""
        if first_recent >= self.uidnext:
            return
        with self.index.write():
            state = self.index.box(self.key, create=False)
            assert state is not None
            first = state.first_recent_uid
            if first < self.uidnext:
                self.index.update_box(self._box, first_recent_uid=self.uidnext)
                self._recent.append((first, self.uidnext - 1))

    def recent_uids(self) -> list[int]:
        out: list[int] = []
        for lo, hi in self._recent:
            out.extend(self.uids[bisect_left(self.uids, lo) : bisect_right(self.uids, hi)])
        return out

    def peek_recent_uids(self) -> list[int]:
        state = self.index.box(self.key, create=False)
        if state is None:
            return []
        return list(self.uids[bisect_left(self.uids, state.first_recent_uid):])

    def refresh_flags(self) -> list[int]:
        if self._view_modseq < 0:
            return []
        try:
            rows = self.index.changed_since(self._box, self._view_modseq)
        except sqlite3.Error as e:
            raise StorageError(f"index: {e}") from e
        out: list[int] = []
        if rows:
            self._unseen_hint = None
        for uid, stored, modseq in rows:
            seq = self.seq_of(uid)
            if seq is None:
                continue  # new since the view: the next sync announces it
            bits = self._overlay(uid, bits_from_db(stored))
            if self.flags[seq - 1] != bits or self.modseqs[seq - 1] != modseq:
                out.append(uid)  # as ``sync`` reports it
            self.flags[seq - 1] = bits
            self.modseqs[seq - 1] = modseq
        return out

    def expunged_since(self, modseq: int) -> list[int]:
        return self.index.expunged_since(self._box, modseq)

    def status(self) -> MailboxStatus:
        """From the mailbox's counters in the index (no per-message rows are read)."""
        row = self.index.status_row(self._box)
        assert row is not None
        messages, unseen, deleted, size, uidvalidity, uidnext, highestmodseq, first_recent = row
        if self.private is not None:
            seen = self.private.seen(self.key, uidvalidity)
            live = {uid for (uid,) in self.index.db.execute(
                "SELECT uid FROM msg WHERE box=?", (self._box,))} if seen else set()
            unseen = messages - len(seen & live)
        recent = len(self.recent_uids())
        if first_recent < uidnext:
            recent += self.index.count_from(self._box, first_recent)
        return MailboxStatus(messages=messages, recent=recent, uidnext=uidnext,
                             uidvalidity=uidvalidity, unseen=unseen,
                             highestmodseq=highestmodseq, size=size, deleted=deleted)

    def details(self, uids: Sequence[int]) -> list[MessageDetails]:
        rows = self.index.details(self._box, uids)
        dates = self._internal_dates([r[0] for r in rows if r[3] < 0])
        return [MessageDetails(r[0], self._overlay(r[0], bits_from_db(r[1])), r[2],
                               dates.get(r[0], r[3]), r[4], r[5])
                for r in rows]

    def _internal_dates(self, uids: list[int]) -> dict[int, float]:
        """The files' mtimes for messages a sync indexed without one, kept in the index."""
        if not uids:
            return {}
        out: dict[int, float] = {}
        for uid, row in self.index.rows(self._box, uids).items():
            fname: str | None = row[1]
            while fname is not None:
                try:
                    out[uid] = os.stat(self._full(fname)).st_mtime
                    break
                except FileNotFoundError:
                    located = self._locate(fname)
                    fname = located if located != fname else None
            else:
                out[uid] = 0.0  # gone meanwhile: the next sync expunges it
        try:
            with self.index.write():
                self.index.db.executemany(
                    "UPDATE msg SET idate=? WHERE box=? AND uid=? AND idate<0",
                    [(d, self._box, u) for u, d in out.items()])
        except sqlite3.Error:
            pass  # a busy or read-only index: stat again next time
        return out

    def pop3_uidls(self, uids: Sequence[int]) -> dict[int, str]:
        ul = self._read_uidlist()
        if ul is None:
            return {}
        wanted = set(uids)
        out: dict[int, str] = {}
        for uid, ext in zip(ul.uids, ul.exts, strict=True):
            if ext and uid in wanted:
                for fld in ext.split():
                    if fld[:1] == "P" and len(fld) > 1:
                        out[uid] = fld[1:]
        return out

    def pop3_sources(self, uids: Sequence[int]) -> dict[int, Pop3Source]:
        """What POP3 needs from the uidlist without opening messages: the file-name base
        (``%f``), the GUID (``%g``: a stored ``G`` field, else the base, as Dovecot), the
        size ``pop3_fast_size_lookups`` gives (W= in the name or the uidlist, else S=, else
        None: the file must be read), the POP3 order (O) and a kept UIDL (P)."""
        ul = self._read_uidlist()
        if ul is None:
            return {}
        wanted = set(uids)
        out: dict[int, Pop3Source] = {}
        for uid, ext, base in zip(ul.uids, ul.exts, ul.bases, strict=True):
            if uid not in wanted:
                continue
            guid = base
            physical, vsize = fn.sizes(base)
            order: int | None = None
            uidl: str | None = None
            for fld in ext.split():
                key = fld[:1]
                if key == "G" and len(fld) > 1:
                    guid = fld[1:]
                elif key == "W" and fld[1:].isdigit() and vsize is None:
                    vsize = int(fld[1:])
                elif key == "O" and fld[1:].isdigit():
                    order = int(fld[1:])
                elif key == "P" and len(fld) > 1:
                    uidl = fld[1:]
            out[uid] = Pop3Source(base, guid, vsize if vsize is not None else physical,
                                  order, uidl)
        return out

    def save_pop3_uidls(self, uidls: dict[int, str]) -> None:
        """``pop3_save_uidl``: keep UIDLs sent to clients as ``P`` fields in the uidlist (the
        whole file is rewritten under its lock, as Dovecot does to change a record)."""
        if not uidls or self.readonly:
            return
        with self._lock():
            ul = self._read_uidlist()
            if ul is None:
                return
            changed = False
            for i, uid in enumerate(ul.uids):
                uidl = uidls.get(uid)
                if uidl is None:
                    continue
                fields = [f for f in ul.exts[i].split() if f[:1] != "P"]
                fields.append("P" + uidl)
                ext = " ".join(fields)
                if ext != ul.exts[i]:
                    ul.exts[i] = ext
                    changed = True
            if changed:
                self._write_uidlist(ul)

    # -- message bytes ------------------------------------------------------------------
    def _locate(self, fname: str) -> str | None:
        """The current name of a message whose file was renamed by someone else."""
        base = fn.base_of(fname[4:])
        for sub in ("cur", "new"):
            with os.scandir(os.path.join(self.path, sub)) as it:
                for e in it:
                    if fn.base_of(e.name) == base:
                        return f"{sub}/{e.name}"
        return None

    def open_message(self, uid: int) -> BinaryIO:
        fname = self.index.fname(self._box, uid)
        if fname is None:
            raise MessageGone(uid)
        try:
            return open(self._full(fname), "rb")
        except FileNotFoundError:
            current = self._locate(fname)
            if current is None:
                raise MessageGone(uid) from None
            return open(self._full(current), "rb")

    # -- append -------------------------------------------------------------------------
    def begin_append(self) -> MaildirAppend:
        if self.readonly:
            raise ReadOnly()
        return MaildirAppend(self)

    def _keyword_letters(self, names: Iterable[str], lock: Dotlock | None
                         ) -> list[str | None]:
        """dovecot-keywords slots with a letter for each keyword in ``names`` (if room)."""
        slots = self._read_slots()
        have = {s.lower() for s in slots if s}
        missing = [n for n in dict.fromkeys(names) if n.lower() not in have]
        if not missing or None not in slots:
            return slots
        if lock is None:
            with self._lock() as held:
                return self._keyword_letters(names, held)
        slots = self._read_slots()  # re-read under the lock
        have = {s.lower() for s in slots if s}
        dirty = False
        for name in missing:
            if name.lower() in have or None not in slots:
                continue
            slots[slots.index(None)] = name
            have.add(name.lower())
            dirty = True
        if dirty:
            replace_file(self.keywords_path, kwfile.format(slots), mode=self.mlist.file_mode,
                         fsync=self.mlist.fsync != "never", steal=True)
        return slots

    def _letters_for(self, bits: int, slots: list[str | None], other: str = "") -> str:
        kws = self.index.keywords(self._box) if bits >> F.KEYWORD_SHIFT else []
        pos = {s.lower(): i for i, s in enumerate(slots) if s}
        letters = []
        for i in F.keyword_indexes(bits):
            if i < len(kws):
                slot = pos.get(kws[i].lower())
                if slot is not None:
                    letters.append(kwfile.letter(slot))
        return fn.format_flags(bits & F.SYSTEM_MASK, "".join(letters), other)

    def flag_names(self, bits: int) -> list[str]:
        if bits >> (F.KEYWORD_SHIFT + len(self.keywords)):
            # a keyword added since the view's last sync (the table only ever grows)
            self.keywords = self.index.keywords(self._box)
        return super().flag_names(bits)

    def _bits_for_names(self, names: Iterable[str]) -> tuple[int, list[str]]:
        bits = 0
        kws: list[str] = []
        for name in names:
            b = F.system_bit(name)
            if b is not None:
                bits |= b
            elif name.startswith("\\"):
                if name.lower() != "\\recent":
                    raise StorageError(f"Invalid system flag {name}", code="CANNOT")
            else:
                bits |= F.keyword_bit(self.index.add_keyword(self._box, name))
                kws.append(name)
        return bits, kws

    # -- flags --------------------------------------------------------------------------
    def store(self, uids: Sequence[int], mode: str, flags: Iterable[str],
              unchangedsince: int | None = None) -> StoreResult:
        if self.readonly:
            raise ReadOnly()
        if mode not in ("+", "-", "="):
            raise ValueError(f"bad store mode {mode!r}")
        mask, kw_names = self._bits_for_names(flags)
        self._unseen_hint = None
        # INDEXPVT: \Seen is this user's own, the other flags are the owner's
        pvt_mask = mask & F.SEEN if self.private is not None else 0
        mask &= ~pvt_mask
        keep = F.SEEN if self.private is not None else 0  # "=" leaves the owner's \Seen
        changed: list[int] = []
        modified: list[int] = []
        seen_now: list[int] = []
        unseen_now: list[int] = []
        with self._lock() as lock:
            sig_before = self._disk_sig()
            slots = self._keyword_letters(kw_names, lock) if mode != "-" else self._read_slots()
            with self.index.write():
                state = self.index.box(self.key, create=False)
                assert state is not None
                modseq = state.highestmodseq + 1
                # the view has every change up to now: after this one it still will
                current = self._view_modseq == state.highestmodseq and self.private is None
                rows = self.index.rows(self._box, uids)
                for uid in uids:
                    row = rows.get(uid)
                    if row is None:
                        continue
                    if unchangedsince is not None and row[3] > unchangedsince:
                        modified.append(uid)
                        continue
                    old = bits_from_db(row[2])
                    new = old | mask if mode == "+" else old & ~mask if mode == "-" \
                        else mask | (old & keep)
                    seen = self._seen_after(uid, mode, pvt_mask, seen_now, unseen_now)
                    if new == old and seen is None:
                        continue
                    seq = self.seq_of(uid)
                    if new != old:
                        lock.touch()
                        fname = self._rename_for_flags(row[1], new, slots)
                        if fname is None:
                            continue
                        self.index.set_file(self._box, uid, fname, new, modseq)
                        if seq is not None:
                            self.modseqs[seq - 1] = modseq
                        else:
                            current = False
                    changed.append(uid)
                    if seq is not None:
                        self.flags[seq - 1] = self._overlay(uid, new)
                values: dict[str, int | str] = {**self._sig_kept(sig_before, state)}
                if changed:
                    values["highestmodseq"] = modseq
                    if current:  # the next sync need not read this change back
                        self._view_modseq = modseq
                if values:
                    self.index.update_box(self._box, **values)
        if self.private is not None:
            for uids_, on in ((seen_now, True), (unseen_now, False)):
                if uids_:
                    before = self.private.version(self.key)
                    self.private.set_seen(self.key, self.uidvalidity, uids_, on)
                    if before == self._pvt_version:
                        self._pvt_version = before + 1  # our own change: already in the view
        return StoreResult(changed, modified)

    def _seen_after(self, uid: int, mode: str, pvt_mask: int, seen_now: list[int],
                    unseen_now: list[int]) -> bool | None:
        """INDEXPVT: this user's new private \\Seen of ``uid`` (None: unchanged), noted in
        ``seen_now``/``unseen_now`` and the overlay."""
        if self.private is None or (mode != "=" and not pvt_mask):
            return None
        old = uid in self._pvt_seen
        new = bool(pvt_mask) if mode == "=" else mode == "+"
        if new == old:
            return None
        if new:
            self._pvt_seen.add(uid)
            seen_now.append(uid)
        else:
            self._pvt_seen.discard(uid)
            unseen_now.append(uid)
        return new

    def _rename_for_flags(self, fname: str, bits: int, slots: list[str | None]) -> str | None:
        for _ in range(2):
            _, letters = fn.split(fname[4:])
            base = fn.base_of(fname[4:])
            _, _, other = fn.parse_flags(letters or "")
            dest = f"cur/{fn.with_flags(base, self._letters_for(bits, slots, other))}"
            if dest == fname:
                return fname
            try:
                os.rename(self._full(fname), self._full(dest))
                return dest
            except FileNotFoundError:
                current = self._locate(fname)
                if current is None:
                    return None
                fname = current
        return None

    # -- expunge ------------------------------------------------------------------------
    def expunge(self, uids: Sequence[int] | None = None) -> list[int]:
        if self.readonly:
            raise ReadOnly()
        cur = self.index.db.execute(
            "SELECT uid FROM msg WHERE box=? AND (flags & 8) != 0 ORDER BY uid", (self._box,))
        deleted = [u for (u,) in cur]
        if uids is not None:
            wanted = set(uids)
            deleted = [u for u in deleted if u in wanted]
        return self._expunge_uids(deleted)

    def expunge_uids(self, uids: Sequence[int]) -> list[int]:
        """Expunge exactly ``uids``, \\Deleted or not (POP3's UPDATE state: Dovecot expunges
        without setting the flag, so IMAP sessions see only the EXPUNGE)."""
        if self.readonly:
            raise ReadOnly()
        return self._expunge_uids(sorted(uids))

    def _expunge_uids(self, uids: Sequence[int]) -> list[int]:
        if not uids:
            return []
        done: list[int] = []
        freed = 0
        with self._lock() as lock:
            sig_before = self._disk_sig()
            with self.index.write():
                state = self.index.box(self.key, create=False)
                assert state is not None
                modseq = state.highestmodseq + 1
                for uid in uids:
                    row = self.index.db.execute(
                        "SELECT fname, size FROM msg WHERE box=? AND uid=?",
                        (self._box, uid)).fetchone()
                    if row is None:
                        continue
                    lock.touch()
                    fname: str | None = row[0]
                    while fname is not None:
                        try:
                            os.unlink(self._full(fname))
                            break
                        except FileNotFoundError:
                            fname = self._locate(fname)
                    done.append(uid)
                    freed += row[1]
                if done:
                    self.index.remove(self._box, done, modseq)
                self._maybe_rewrite_uidlist(lock)
                values: dict[str, int | str] = {**self._sig_kept(sig_before, state)}
                if done:
                    values["highestmodseq"] = modseq
                if values:
                    self.index.update_box(self._box, **values)
        if done:
            self.mlist.quota.changed(self.name, -freed, -len(done))
        return done

    def _maybe_rewrite_uidlist(self, lock: Dotlock) -> None:
        live = self.index.counters(self._box)[0]  # (kept by triggers: no count over rows)
        if self._ul_cache is None:
            # not parsed by this process yet: its lines bound the records from above
            try:
                with open(self.uidlist_path, "rb") as f:
                    if f.read().count(b"\n") - 1 - live < self.rewrite_min_dead:
                        return
            except FileNotFoundError:
                return
        ul = self._read_uidlist()
        if ul is None:
            return
        if len(ul.uids) - live < self.rewrite_min_dead:
            return
        scan = self._scan()
        keep = ulfile.Uidlist(version=3, uidvalidity=ul.uidvalidity, next_uid=ul.real_next_uid,
                              guid=ul.guid, header_extra=ul.header_extra)
        for uid, ext, base in zip(ul.uids, ul.exts, ul.bases, strict=True):
            if base in scan.files:
                keep.add(uid, base, ext)
        lock.touch()
        self._write_uidlist(keep)

    # -- copy ---------------------------------------------------------------------------
    def copy(self, uids: Sequence[int], dest: Mailbox) -> list[tuple[int, int]]:
        if not isinstance(dest, MaildirMailbox) or not self.mlist.settings.copy_with_hardlinks:
            # another backend: stream through its append
            tx: AppendTransaction = dest.begin_append()
            src_uids = []
            with tx:
                for d in self.details(uids):
                    with self.open_message(d.uid) as f:
                        tx.add(f, self.flag_names(d.flags), d.internal_date)
                    src_uids.append(d.uid)
                return list(zip(src_uids, tx.commit(), strict=True))
        mtx = dest.begin_append()
        src_uids = []
        with mtx:
            for d in self.details(uids):
                fname = self.index.fname(self._box, d.uid)
                if fname is None:
                    continue
                mtx.add_link(self, fname, d)
                src_uids.append(d.uid)
            return list(zip(src_uids, mtx.commit(), strict=True))

    # -- cache, notification ------------------------------------------------------------
    def cache_get(self, uid: int, field: str) -> bytes | None:
        return self.index.cache_get(self._box, uid, field)

    def cache_get_many(self, uids: Sequence[int], field: str) -> dict[int, bytes]:
        return self.index.cache_get_many(self._box, uids, field)

    def will_read(self, uids: Sequence[int], length: int) -> None:
        for _, fname, _, _ in self.index.rows(self._box, uids).values():
            try:
                fd = os.open(self._full(fname), os.O_RDONLY)
            except OSError:
                continue  # renamed or gone: the read itself finds out
            try:
                os.posix_fadvise(fd, 0, length, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def cache_put(self, uid: int, field: str, value: bytes) -> None:
        self.index.cache_put(self._box, uid, field, value)

    def cache_put_many(self, entries: Iterable[tuple[int, str, bytes]]) -> None:
        with self.index.write():
            for uid, field, value in entries:
                self.index.cache_put(self._box, uid, field, value)

    def watch(self) -> ChangeWatcher:
        dirs = [os.path.join(self.path, "new"), os.path.join(self.path, "cur")]
        if self.control != self.path:
            dirs.append(self.control)
        return watch(dirs)

    def close(self) -> None:
        self._drop_uidlist_cache()
        self._drop_packed()

    def __del__(self) -> None:
        cache = getattr(self, "_ul_cache", None)
        if cache is not None:
            os.close(cache.fd)


class _Pending(NamedTuple):
    tmp: str
    base: str
    size: int
    vsize: int
    bits: int
    keywords: list[str]


@os_errors_as_storage_errors
class MaildirAppend(AppendTransaction):
    """Messages go to ``tmp/`` as they are added; ``commit`` renames them and gives UIDs."""

    def __init__(self, box: MaildirMailbox) -> None:
        self.box = box
        self.pending: list[_Pending] = []
        self.tmp_dir = os.path.join(box.path, "tmp")

    def add(self, data: bytes | BinaryIO, flags: Iterable[str] = (),
            internal_date: float | None = None) -> None:
        bits, kws = self.box._bits_for_names(flags)
        base = fn.new_base()
        tmp = os.path.join(self.tmp_dir, base)
        src: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        fd = self.box.mlist.create_file(tmp, os.O_WRONLY | os.O_EXCL)
        counter = SizeCounter()
        try:
            while chunk := src.read(_CHUNK):
                counter.feed(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            if internal_date is not None:
                os.utime(fd, (internal_date, internal_date))
            if self.box.mlist.fsync != "never":
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        self.pending.append(_Pending(tmp, base, counter.size, counter.vsize, bits, kws))

    def add_link(self, src: MaildirMailbox, fname: str, d: MessageDetails) -> None:
        """Copy by hard link (Dovecot's maildir_copy_with_hardlinks), else by bytes."""
        base = fn.new_base()
        tmp = os.path.join(self.tmp_dir, base)
        names = src.flag_names(d.flags)
        bits, kws = self.box._bits_for_names(names)
        path = src._full(fname)
        try:
            os.link(path, tmp)
        except FileNotFoundError:
            current = src._locate(fname)
            if current is None:
                raise MessageGone(d.uid) from None
            os.link(src._full(current), tmp)
        except OSError:
            with src.open_message(d.uid) as f:
                self.add(f, names, d.internal_date)
            return
        self.pending.append(_Pending(tmp, base, d.size, d.vsize, bits, kws))

    def commit(self) -> list[int]:
        box = self.box
        total = sum(p.size for p in self.pending)
        if not box.moving_in:
            box.mlist.quota.check(box.name, total, len(self.pending))
        if not self.pending:
            return []
        all_kws = [k for p in self.pending for k in p.keywords]
        uids: list[int] = []
        with box._lock() as lock:
            sig_before = box._disk_sig()
            slots = box._keyword_letters(all_kws, lock) if all_kws else box._read_slots()
            ul = box._uidlist_header(sig_before) or box._read_uidlist()
            if ul is None:
                # no (valid) uidlist yet: a full locked sync creates it first
                ul = box._fix_locked(box._scan(), lock).uidlist
                assert ul is not None
            start = len(ul.uids)
            uid = ul.real_next_uid
            rows = []
            for p in self.pending:
                lock.touch()
                name = f"{p.base},S={p.size},W={p.vsize}"
                if p.bits:
                    fname = f"cur/{fn.with_flags(name, box._letters_for(p.bits, slots))}"
                else:
                    fname = f"new/{name}"
                os.rename(p.tmp, box._full(fname))
                idate = os.stat(box._full(fname)).st_mtime
                ul.add(uid, name)
                rows.append((uid, fname, bits_to_db(p.bits), 0, idate, p.size, p.vsize))
                uids.append(uid)
                uid += 1
            if box.mlist.fsync == "always":
                for sub in ("new", "cur"):
                    dfd = os.open(os.path.join(box.path, sub), os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            box._append_uidlist(ul, start)
            self.pending = []
            with box.index.write():
                state = box.index.box(box.key, create=False)
                assert state is not None
                if state.uidvalidity == ul.uidvalidity:
                    modseq = state.highestmodseq + 1
                    box.index.insert(box._box, [(*r[:3], modseq, *r[4:]) for r in rows])
                    box.index.update_box(box._box, highestmodseq=modseq, uidnext=uid,
                                         **box._sig_kept(sig_before, state))
                    if box._view_modseq == state.highestmodseq and box.private is None:
                        box._own_append = (state.highestmodseq, modseq,
                                           [(r[0], r[2], modseq) for r in rows])
        box.mlist.quota.changed(box.name, total, len(uids))
        return uids

    def rollback(self) -> None:
        for p in self.pending:
            try:
                os.unlink(p.tmp)
            except FileNotFoundError:
                pass
        self.pending = []
