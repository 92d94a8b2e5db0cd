"""cote's own index: a rebuildable SQLite cache of every mailbox of one user.

One file per user (``cote.index.sqlite`` under ``INDEX=`` or the mail root), WAL mode so
readers never block the writer. It is never authoritative over Dovecot's files: deleting it
loses nothing; the next sync rebuilds it with the same UIDs from ``dovecot-uidlist``.

Per mailbox (keyed by its backend path key): UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, the disk
signature of the last scan (``new/``/``cur/``/uidlist stat), the first UID not yet seen as
\\Recent, and a keyword table. Per message: UID, file name, flag bits, modseq, internal date,
physical and CRLF size, and cache columns (ENVELOPE, BODYSTRUCTURE, sort keys) that the IMAP
layer fills lazily. Expunged UIDs are kept with their modseq (for QRESYNC's VANISHED).

Flag bits are stored as an INTEGER while they fit in 63 bits and as hex TEXT beyond (many
keywords); :func:`bits_from_db` reads both.

The packed view snapshot of a mailbox lives in a file beside the database
(``cote.index.sqlite-view.<box id>``: header, UIDs, flags, modseqs, token), not in a BLOB:
SQLite reads a 2 MB BLOB page by page through its overflow chain (~3-8 ms for 100k messages
in a new process, the cost of every warm SELECT), a file is a few ``pread`` calls. The
``snapshot`` row says which file content is valid (its random token, repeated in the file's
header and trailer), so a file from a deleted or rebuilt index, a torn write or a lost row is
never believed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from cote.storage.sqltx import immediate

NAME = "cote.index.sqlite"
SCHEMA_VERSION = 4
CACHE_FIELDS = ("envelope", "bodystructure", "sortkeys", "searchhdr")
_ADDED_COLUMNS = (("msg", "searchhdr", "BLOB"),)
"""Cache columns added after a schema version: ALTERed into an existing index on open."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS mailbox(
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, uidvalidity INTEGER NOT NULL DEFAULT 0,
    uidnext INTEGER NOT NULL DEFAULT 1, highestmodseq INTEGER NOT NULL DEFAULT 1,
    sig TEXT NOT NULL DEFAULT '', first_recent_uid INTEGER NOT NULL DEFAULT 1,
    scans INTEGER NOT NULL DEFAULT 0, messages INTEGER NOT NULL DEFAULT 0,
    unseen INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0,
    vsizes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS keyword(box INTEGER NOT NULL, idx INTEGER NOT NULL,
    name TEXT NOT NULL, PRIMARY KEY(box, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS msg(
    box INTEGER NOT NULL, uid INTEGER NOT NULL, fname TEXT NOT NULL, flags NOT NULL,
    modseq INTEGER NOT NULL, idate REAL NOT NULL, size INTEGER NOT NULL,
    vsize INTEGER NOT NULL, envelope BLOB, bodystructure BLOB, sortkeys BLOB, searchhdr BLOB,
    PRIMARY KEY(box, uid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS msg_modseq ON msg(box, modseq) WHERE modseq > 2;
CREATE TABLE IF NOT EXISTS expunged(box INTEGER NOT NULL, uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL, PRIMARY KEY(box, uid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(box, modseq);
CREATE TABLE IF NOT EXISTS snapshot(box INTEGER PRIMARY KEY, modseq INTEGER NOT NULL,
    token BLOB NOT NULL, count INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS msg_counted_in AFTER INSERT ON msg BEGIN
    UPDATE mailbox SET messages=messages+1, unseen=unseen+1-{seen(new)},
        deleted=deleted+{deleted(new)}, vsizes=vsizes+new.vsize WHERE id=new.box; END;
CREATE TRIGGER IF NOT EXISTS msg_counted_out AFTER DELETE ON msg BEGIN
    UPDATE mailbox SET messages=messages-1, unseen=unseen-1+{seen(old)},
        deleted=deleted-{deleted(old)}, vsizes=vsizes-old.vsize WHERE id=old.box; END;
CREATE TRIGGER IF NOT EXISTS msg_counted_change AFTER UPDATE OF flags, vsize ON msg BEGIN
    UPDATE mailbox SET unseen=unseen+{seen(old)}-{seen(new)},
        deleted=deleted-{deleted(old)}+{deleted(new)}, vsizes=vsizes-old.vsize+new.vsize
        WHERE id=new.box; END;
"""


def _bit_sql(row: str, bit: int, hex_digits: str) -> str:
    """SQL for one system flag bit of ``row.flags`` (an INTEGER, or hex TEXT beyond 63 bits:
    the low hex digit holds the system flags tested here)."""
    return (f"(CASE WHEN typeof({row}.flags)='integer' THEN ({row}.flags & {bit}) != 0 "
            f"ELSE instr('{hex_digits}', substr({row}.flags, -1)) > 0 END)")


# mailbox-level counters kept by triggers: STATUS never reads the messages' rows
_SCHEMA = _SCHEMA.replace("{seen(new)}", _bit_sql("new", 1, "13579bdf")) \
    .replace("{seen(old)}", _bit_sql("old", 1, "13579bdf")) \
    .replace("{deleted(new)}", _bit_sql("new", 8, "89abcdef")) \
    .replace("{deleted(old)}", _bit_sql("old", 8, "89abcdef"))
_INSERT_TRIGGER = next(stmt for stmt in _SCHEMA.split(";\n")
                       if "TRIGGER IF NOT EXISTS msg_counted_in" in stmt)
_TABLES = ("meta", "mailbox", "keyword", "msg", "expunged", "snapshot")
_HAS_COLUMN = "(SELECT instr(sql, ' {1} ') > 0 FROM sqlite_master WHERE name='{0}')"
_OPEN_CHECK = ", ".join(["SELECT (SELECT value FROM meta WHERE key='schema')",
                         *(_HAS_COLUMN.format(t, c) for t, c, _ in _ADDED_COLUMNS)])
"""One statement on open: the schema version, and whether each added column is there
(``ALTER TABLE ADD COLUMN`` appends `` name TYPE`` to the table's SQL)."""
WAL_AUTOCHECKPOINT = 100
"""Pages in the WAL before a commit copies them back (SQLite's default: 1000, ~4 MB)."""
FIRST_MODSEQ = 2
"""The modseq of a box's first indexed messages (a fresh box starts at HIGHESTMODSEQ 1):
rows with it are left out of the ``msg_modseq`` index (partial, ``modseq > 2``), so a cold
sync of 100k messages does not build 100k index entries that only a view older than the
box's first sync could ask for (``changed_since`` below 2 reads the box's rows instead)."""

_INT63 = (1 << 63) - 1


def bits_to_db(bits: int) -> int | str:
    return bits if bits <= _INT63 else format(bits, "x")


def bits_from_db(value: int | str) -> int:
    return value if isinstance(value, int) else int(value, 16)


_VIEW_MAGIC = b"COTEVIEW"
#: magic, modseq, count, flag width, index of the first unseen message (count: none), token
_VIEW_HEAD = struct.Struct("<8sQQIQ16s")
_TOKEN = 16


class Snapshot:
    """A whole view packed, as it was at ``modseq``: UIDs as ``array('I')`` bytes, flags as
    ``array('B')`` (``flag_width`` 1, no keyword bits) or ``array('Q')`` bytes (width 8),
    modseqs as ``array('Q')`` bytes. The header alone answers SELECT (count, first unseen);
    :meth:`columns` reads the rest when the view is first used. The open file keeps that
    content: it is written once and replaced only by rename, so a later read still gives
    this snapshot. Native byte order: the file is a per-host cache, like the index."""

    __slots__ = ("_fd", "count", "first_unseen", "flag_width", "modseq")

    def __init__(self, fd: int, modseq: int, count: int, flag_width: int,
                 first_unseen: int) -> None:
        self._fd = fd
        self.modseq = modseq
        self.count = count
        self.flag_width = flag_width
        self.first_unseen = first_unseen
        """Index of the first message without \\Seen; ``count`` when all are seen."""

    def uid_at(self, index: int) -> int:
        return int.from_bytes(_pread(self._fd, 4, _VIEW_HEAD.size + 4 * index), sys.byteorder)

    def columns(self) -> tuple[bytes, bytes, bytes]:
        """``(uids, flags, modseqs)`` as packed bytes; the file is closed after."""
        n = self.count
        try:
            data = _pread(self._fd, (12 + self.flag_width) * n, _VIEW_HEAD.size)
        finally:
            self.close()
        flags_end = (4 + self.flag_width) * n
        return data[: 4 * n], data[4 * n : flags_end], data[flags_end:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def _pread(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:  # a regular file gives it all unless it is shorter than checked
        chunks = [data]
        got = len(data)
        while got < size and (chunk := os.pread(fd, size - got, offset + got)):
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
        if len(data) != size:
            raise OSError(errno.EIO, "short read of the view snapshot")
    return data


class NewRows(NamedTuple):
    """Column lists of messages for :meth:`Index.insert_new`."""

    uids: Sequence[int]
    fnames: Sequence[str]
    flags: Sequence[int | str]
    sizes: Sequence[int]
    vsizes: Sequence[int]


class BoxState(NamedTuple):
    id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    sig: str
    first_recent_uid: int
    scans: int


class Index:
    """The SQLite index file of one user; one connection per process."""

    def __init__(self, path: str, *, file_mode: int = 0o600, dir_mode: int = 0o700,
                 gid: int = -1) -> None:
        self.path = path
        self.file_mode = file_mode
        self._depth = 0
        self.dir_mode = dir_mode
        # like Dovecot's index files: the mail root's mode and group, not the umask's
        # (SQLite gives -wal/-shm the database file's mode, and its owner when root)
        self.gid = gid
        try:
            self.db = self._open()
        except sqlite3.DatabaseError:
            if path == ":memory:":
                raise
            # a corrupt cache is thrown away: everything in it is rebuilt from the mail store
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(path + suffix)
                except FileNotFoundError:
                    pass
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            self._create_if_missing()
        # (the busy timeout is connect's: 60 s)
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                             check_same_thread=False)
        try:
            # INSERT OR REPLACE deletes the old row: its counter trigger must run.
            # A small WAL: a process that opens the index alone (the usual case: mail
            # processes end without closing it) reads every frame of it back first.
            db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                             " PRAGMA recursive_triggers=ON;"
                             f" PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT};")
            self.db = db
            try:
                row = db.execute(_OPEN_CHECK).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row is not None and row[0] == SCHEMA_VERSION:
                if not all(row[1:]):
                    self._add_columns(db)
                return db
            with self.write():
                if row is not None:  # an older cache: rebuilt from the mail store
                    for table in _TABLES:
                        db.execute(f"DROP TABLE IF EXISTS {table}")
                for stmt in _SCHEMA.split(";\n"):  # trigger bodies hold "; END"
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("INSERT OR REPLACE INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _create_if_missing(self) -> None:
        """A missing file is created with the mail root's mode and group. An existing one
        is never opened here: closing any descriptor of a file drops every POSIX lock the
        process holds on it, SQLite's included (another connection of this process to the
        same index, e.g. from an earlier session of a process that serves several)."""
        if os.path.exists(self.path):
            return
        os.makedirs(os.path.dirname(self.path) or ".", mode=self.dir_mode, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         self.file_mode)
        except FileExistsError:
            return  # another process created it meanwhile
        try:
            os.fchmod(fd, self.file_mode)
            if self.gid != -1:
                os.fchown(fd, -1, self.gid)
        finally:
            os.close(fd)

    def _add_columns(self, db: sqlite3.Connection) -> None:
        for table, column, kind in _ADDED_COLUMNS:
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                try:
                    with self.write():
                        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                        if column not in have:  # another process may have added it
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError:
                    pass  # a read-only index: that cache column stays unused, not fatal

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``); nested uses join the outer one."""
        depth = self._depth
        if depth:
            self._depth = depth + 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with immediate(self.db):
                yield self.db
        finally:
            self._depth = 0

    # -- mailboxes ----------------------------------------------------------------------
    def box(self, key: str, *, create: bool = True) -> BoxState | None:
        row = self.db.execute(
            "SELECT id, uidvalidity, uidnext, highestmodseq, sig, first_recent_uid, scans "
            "FROM mailbox WHERE key=?", (key,)).fetchone()
        if row is None and create:
            with self.write():
                self.db.execute("INSERT OR IGNORE INTO mailbox(key) VALUES(?)", (key,))
            return self.box(key, create=False)
        return BoxState(*row) if row else None

    def box_sig(self, key: str) -> str | None:
        row = self.db.execute("SELECT sig FROM mailbox WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def update_box(self, box: int, **values: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in values)
        self.db.execute(f"UPDATE mailbox SET {cols} WHERE id=?",  # noqa: S608 (fixed names)
                        (*values.values(), box))

    def forget(self, key_prefix: str, exact: str | None = None) -> None:
        """Drop the index data of mailboxes (after delete/rename: rebuilt on next open)."""
        with self.write():
            rows = self.db.execute(
                "SELECT id FROM mailbox WHERE key=? OR substr(key, 1, ?)=?",
                (exact if exact is not None else key_prefix, len(key_prefix), key_prefix),
            ).fetchall()
            for (box,) in rows:
                for table in ("msg", "expunged", "keyword", "snapshot"):
                    self.db.execute(f"DELETE FROM {table} WHERE box=?", (box,))  # noqa: S608
                self.db.execute("DELETE FROM mailbox WHERE id=?", (box,))
                self._drop_view_file(box)

    def reset_box(self, box: int) -> None:
        for table in ("msg", "expunged", "keyword", "snapshot"):
            self.db.execute(f"DELETE FROM {table} WHERE box=?", (box,))  # noqa: S608
        self._drop_view_file(box)
        self.update_box(box, uidvalidity=0, uidnext=1, highestmodseq=1, sig="",
                        first_recent_uid=1)

    def counters(self, box: int) -> tuple[int, int, int, int]:
        """``(messages, unseen, deleted, sum of vsizes)``, kept by triggers on ``msg``."""
        row = self.db.execute("SELECT messages, unseen, deleted, vsizes FROM mailbox "
                              "WHERE id=?", (box,)).fetchone()
        return (row[0], row[1], row[2], row[3]) if row else (0, 0, 0, 0)

    def status_row(self, box: int) -> tuple[int, ...] | None:
        """``(messages, unseen, deleted, vsizes, uidvalidity, uidnext, highestmodseq,
        first_recent_uid)`` in one read: everything STATUS needs."""
        row = self.db.execute(
            "SELECT messages, unseen, deleted, vsizes, uidvalidity, uidnext, highestmodseq, "
            "first_recent_uid FROM mailbox WHERE id=?", (box,)).fetchone()
        return tuple(row) if row else None

    def count_from(self, box: int, uid: int) -> int:
        """Messages with a UID of at least ``uid`` (\\Recent ones: a short range)."""
        row = self.db.execute("SELECT count(*) FROM msg WHERE box=? AND uid>=?",
                              (box, uid)).fetchone()
        return int(row[0])

    # -- the view snapshot --------------------------------------------------------------
    def view_path(self, box: int) -> str:
        return f"{self.path}-view.{box}"

    def snapshot(self, box: int) -> Snapshot | None:
        """The packed view saved last (changes since are in ``msg``/``expunged`` with higher
        modseqs), or None when there is none that the ``snapshot`` row vouches for."""
        row = self.db.execute("SELECT modseq, token, count FROM snapshot WHERE box=?",
                              (box,)).fetchone()
        if row is None or self.path == ":memory:":
            return None
        modseq, token, count = row
        try:
            fd = os.open(self.view_path(box), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            head = _VIEW_HEAD.size
            data = _pread(fd, head, 0) if size >= head else b""
            if len(data) == head:
                magic, f_modseq, f_count, width, unseen, f_token = _VIEW_HEAD.unpack(data)
                if (magic, f_modseq, f_count, f_token) == (_VIEW_MAGIC, modseq, count, token) \
                        and width in (1, 8) and unseen <= count \
                        and size == head + count * (12 + width) + _TOKEN \
                        and _pread(fd, _TOKEN, size - _TOKEN) == token:
                    snap = Snapshot(fd, modseq, count, width, unseen)
                    fd = -1
                    return snap
            return None  # replaced meanwhile, torn, or not this index's: rows decide
        except OSError:
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def put_snapshot(self, box: int, modseq: int, uids: bytes, flags: bytes, *,
                     flag_width: int, modseqs: bytes, first_unseen: int) -> None:
        """Save a packed view (see :class:`Snapshot`): the file is written aside, then renamed
        into place and vouched for in one write transaction, so writers never mix."""
        if self.path == ":memory:":
            return
        count = len(uids) // 4
        token = os.urandom(_TOKEN)
        final = self.view_path(box)
        tmp = f"{final}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, self.file_mode)
        try:
            try:
                os.fchmod(fd, self.file_mode)
                if self.gid != -1:
                    os.fchown(fd, -1, self.gid)
                head = _VIEW_HEAD.pack(_VIEW_MAGIC, modseq, count, flag_width, first_unseen,
                                       token)
                for part in (head, uids, flags, modseqs, token):
                    view = memoryview(part)
                    while view:
                        view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            with self.write():
                os.rename(tmp, final)
                self.db.execute("INSERT OR REPLACE INTO snapshot VALUES(?, ?, ?, ?)",
                                (box, modseq, token, count))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _drop_view_file(self, box: int) -> None:
        if self.path != ":memory:":
            try:
                os.unlink(self.view_path(box))
            except OSError:
                pass

    # -- keywords -----------------------------------------------------------------------
    def keywords(self, box: int) -> list[str]:
        rows = self.db.execute("SELECT idx, name FROM keyword WHERE box=? ORDER BY idx",
                               (box,)).fetchall()
        return [name for _, name in rows]

    def add_keyword(self, box: int, name: str) -> int:
        """The index of ``name`` in the mailbox keyword table, added when missing."""
        with self.write():
            names = self.keywords(box)
            lower = [n.lower() for n in names]
            if name.lower() in lower:
                return lower.index(name.lower())
            self.db.execute("INSERT INTO keyword VALUES(?, ?, ?)", (box, len(names), name))
            return len(names)

    # -- messages -----------------------------------------------------------------------
    def messages(self, box: int) -> list[tuple[int, int | str, int]]:
        """``(uid, flags, modseq)`` of every message, in UID order."""
        return self.db.execute("SELECT uid, flags, modseq FROM msg WHERE box=? ORDER BY uid",
                               (box,)).fetchall()

    def files(self, box: int) -> dict[int, str]:
        """``uid -> file name`` of the box's messages, in UID order; the dict is built from
        the cursor without Python per row (a sync compares every name)."""
        return dict(self.db.execute("SELECT uid, fname FROM msg WHERE box=? ORDER BY uid",
                                    (box,)))

    def fname(self, box: int, uid: int) -> str | None:
        row = self.db.execute("SELECT fname FROM msg WHERE box=? AND uid=?",
                              (box, uid)).fetchone()
        return row[0] if row else None

    def changed_since(self, box: int, modseq: int) -> list[tuple[int, int | str, int]]:
        # through the modseq index (an ORDER BY uid in SQL makes SQLite walk every row of
        # the mailbox by primary key instead): the few changed rows are sorted here
        if modseq >= FIRST_MODSEQ:  # the literal term lets SQLite use the partial index
            rows = self.db.execute(
                "SELECT uid, flags, modseq FROM msg INDEXED BY msg_modseq "
                "WHERE box=? AND modseq>? AND modseq>2", (box, modseq)).fetchall()
        else:
            rows = self.db.execute("SELECT uid, flags, modseq FROM msg WHERE box=? AND modseq>?",
                                   (box, modseq)).fetchall()
        rows.sort()
        return rows

    def expunged_since(self, box: int, modseq: int) -> list[int]:
        rows = self.db.execute(
            "SELECT uid FROM expunged INDEXED BY expunged_modseq WHERE box=? AND modseq>?",
            (box, modseq))
        return sorted(uid for (uid,) in rows)

    def details(self, box: int, uids: Sequence[int]) -> list[tuple[Any, ...]]:
        """``(uid, flags, modseq, idate, size, vsize)`` of the UIDs that exist, by UID. A
        dense set (a whole POP3 maildrop, a FETCH 1:*) is read as one primary-key range,
        much cheaper in SQLite than a long ``IN`` list; a sparse one by ``IN`` chunks."""
        if not uids:
            return []
        lo, hi = min(uids), max(uids)
        if hi - lo < 2 * len(uids):
            rows = self.db.execute(
                "SELECT uid, flags, modseq, idate, size, vsize FROM msg "
                "WHERE box=? AND uid BETWEEN ? AND ?", (box, lo, hi)).fetchall()
            wanted = set(uids)
            if len(wanted) != hi - lo + 1:  # not the whole range: others are left out
                rows = [r for r in rows if r[0] in wanted]
            return rows
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(uids), 500):
            chunk = list(uids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out.extend(self.db.execute(
                f"SELECT uid, flags, modseq, idate, size, vsize FROM msg "  # noqa: S608
                f"WHERE box=? AND uid IN ({marks}) ORDER BY uid", (box, *chunk)).fetchall())
        return out

    def rows(self, box: int, uids: Sequence[int]) -> dict[int, tuple[int, str, int | str, int]]:
        """``uid -> (uid, fname, flags, modseq)`` for the UIDs that exist."""
        out: dict[int, tuple[int, str, int | str, int]] = {}
        for i in range(0, len(uids), 500):
            chunk = list(uids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                    f"SELECT uid, fname, flags, modseq FROM msg "  # noqa: S608
                    f"WHERE box=? AND uid IN ({marks})", (box, *chunk)):
                out[r[0]] = r
        return out

    #: inserts of more rows than this count them in one UPDATE instead of a trigger per row
    bulk_rows = 500

    def insert(self, box: int, rows: Sequence[tuple[Any, ...]]) -> None:
        """rows: ``(uid, fname, flags, modseq, idate, size, vsize)``."""
        sql = ("INSERT OR REPLACE INTO msg(box, uid, fname, flags, modseq, idate, size, vsize) "
               "VALUES(?, ?, ?, ?, ?, ?, ?, ?)")
        if len(rows) <= self.bulk_rows:
            self.db.executemany(sql, [(box, *r) for r in rows])
            return
        # a cold sync of 100k messages: the per-row trigger costs ~70% of the insert; drop it
        # inside this transaction (other connections never see it missing) and count here
        with self.write():
            flags = [bits_from_db(r[2]) for r in rows]
            self.db.execute("DROP TRIGGER msg_counted_in")
            self.db.executemany(sql, [(box, *r) for r in rows])
            self.db.execute(_INSERT_TRIGGER)
            self.db.execute(
                "UPDATE mailbox SET messages=messages+?, unseen=unseen+?, deleted=deleted+?, "
                "vsizes=vsizes+? WHERE id=?",
                (len(rows), sum(1 for f in flags if not f & 1),
                 sum(1 for f in flags if f & 8), sum(r[6] for r in rows), box))

    def insert_new(self, box: int, modseq: int, rows: NewRows, *, unseen: int,
                   deleted: int) -> None:
        """Rows of messages the box has none of yet (a cold sync): one modseq, internal
        dates unknown (read on demand); the constant columns are in the SQL and the counters
        are updated once, as the bulk :meth:`insert` does."""
        sql = ("INSERT INTO msg(box, uid, fname, flags, modseq, idate, size, vsize) "
               f"VALUES({int(box)}, ?, ?, ?, {int(modseq)}, -1.0, ?, ?)")
        with self.write():
            self.db.execute("DROP TRIGGER msg_counted_in")
            self.db.executemany(sql, zip(*rows, strict=True))
            self.db.execute(_INSERT_TRIGGER)
            self.db.execute(
                "UPDATE mailbox SET messages=messages+?, unseen=unseen+?, deleted=deleted+?, "
                "vsizes=vsizes+? WHERE id=?",
                (len(rows.uids), unseen, deleted, sum(rows.vsizes), box))

    def set_file(self, box: int, uid: int, fname: str, flags: int, modseq: int | None) -> None:
        if modseq is None:
            self.db.execute("UPDATE msg SET fname=? WHERE box=? AND uid=?", (fname, box, uid))
        else:
            self.db.execute("UPDATE msg SET fname=?, flags=?, modseq=? WHERE box=? AND uid=?",
                            (fname, bits_to_db(flags), modseq, box, uid))

    def remove(self, box: int, uids: Sequence[int], modseq: int) -> None:
        self.db.executemany("DELETE FROM msg WHERE box=? AND uid=?", [(box, u) for u in uids])
        self.db.executemany("INSERT OR REPLACE INTO expunged VALUES(?, ?, ?)",
                            [(box, u, modseq) for u in uids])

    # -- cache columns ------------------------------------------------------------------
    def cache_get(self, box: int, uid: int, field: str) -> bytes | None:
        if field not in CACHE_FIELDS:
            raise ValueError(f"unknown cache field {field!r}")
        row = self.db.execute(f"SELECT {field} FROM msg WHERE box=? AND uid=?",  # noqa: S608
                              (box, uid)).fetchone()
        return row[0] if row else None

    def cache_get_many(self, box: int, uids: Sequence[int], field: str) -> dict[int, bytes]:
        """``uid -> value`` of one cache column for the given UIDs that have it: one query
        over their UID range (SEARCH reads a whole view's header texts, FETCH a batch's)."""
        if field not in CACHE_FIELDS:
            raise ValueError(f"unknown cache field {field!r}")
        if not uids:
            return {}
        wanted = set(uids)
        rows = self.db.execute(f"SELECT uid, {field} FROM msg WHERE box=? "  # noqa: S608
                               f"AND uid BETWEEN ? AND ? AND {field} IS NOT NULL",
                               (box, min(wanted), max(wanted)))
        return {uid: value for uid, value in rows if uid in wanted}

    def cache_put(self, box: int, uid: int, field: str, value: bytes) -> None:
        if field not in CACHE_FIELDS:
            raise ValueError(f"unknown cache field {field!r}")
        with self.write():
            self.db.execute(f"UPDATE msg SET {field}=? WHERE box=? AND uid=?",  # noqa: S608
                            (value, box, uid))
