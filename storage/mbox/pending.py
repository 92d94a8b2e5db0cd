"""``mbox_lazy_writes``: flag and keyword changes kept out of an mbox file until a full
write sync (Dovecot's rule: EXPUNGE, CHECK and closing the mailbox).

Dovecot keeps such "dirty" changes in its index; cote keeps them in a small SQLite file of
the user (``cote-mbox-pending.sqlite`` in ``INDEX=``, else in ``<root>/.imap/`` beside
Dovecot's own mbox indexes, the one place in the root Dovecot never lists as a mailbox), so
every cote session of the user sees them at once. Each row is the new state of one message
(by mbox path, UIDVALIDITY and UID) and carries the version it was written at: whoever
rewrites the file under the write lock writes every pending row into it, then removes the
rows it wrote (not those added meanwhile). A SIGKILL before that leaves the rows here: the
next cote session shows and writes them; the mail itself is never touched by a STORE.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping

from cote.storage.sqltx import immediate

NAME = "cote-mbox-pending.sqlite"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS pending(key TEXT NOT NULL, uidvalidity INTEGER NOT NULL, "
    "uid INTEGER NOT NULL, bits INTEGER NOT NULL, keywords TEXT NOT NULL, "
    "ver INTEGER NOT NULL, PRIMARY KEY(key, uid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS version(key TEXT PRIMARY KEY, n INTEGER NOT NULL)",
)

#: a message's new state: system flag bits and keyword names
State = tuple[int, tuple[str, ...]]


class PendingChanges:
    """The pending changes of one user's mbox files; opened at first use."""

    def __init__(self, path: str, *, file_mode: int = 0o600) -> None:
        self.path = path
        self.file_mode = file_mode
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if not os.path.exists(self.path):
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, self.file_mode))
            db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                db.execute(stmt)
            self._db = db
        return self._db

    def _absent(self) -> bool:
        """Nothing was ever kept pending (readers do not create the file)."""
        return self._db is None and not os.path.exists(self.path)

    def version(self, key: str) -> int:
        if self._absent():
            return 0
        row = self.db.execute("SELECT n FROM version WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def get(self, key: str, uidvalidity: int) -> tuple[int, dict[int, State]]:
        """``(version, uid -> state)`` of the changes not yet in the file."""
        if self._absent():
            return 0, {}
        db = self.db
        db.execute("BEGIN")
        try:
            ver = self.version(key)
            rows = db.execute("SELECT uid, bits, keywords FROM pending WHERE key=? AND "
                              "uidvalidity=?", (key, uidvalidity)).fetchall()
        finally:
            db.execute("COMMIT")
        return ver, {uid: (bits, tuple(k for k in kws.split(" ") if k))
                     for uid, bits, kws in rows}

    def put(self, key: str, uidvalidity: int, changes: Mapping[int, State]) -> tuple[int, int]:
        """Record new states; ``(version before, version after)``."""
        with immediate(self.db) as db:
            before = self.version(key)
            after = before + 1
            db.execute("INSERT OR REPLACE INTO version VALUES(?, ?)", (key, after))
            db.executemany("INSERT OR REPLACE INTO pending VALUES(?, ?, ?, ?, ?, ?)",
                           [(key, uidvalidity, uid, bits, " ".join(kws), after)
                            for uid, (bits, kws) in changes.items()])
        return before, after

    def written(self, key: str, version: int) -> None:
        """The rows up to ``version`` are in the file now (or name gone messages)."""
        with immediate(self.db) as db:
            db.execute("DELETE FROM pending WHERE key=? AND ver<=?", (key, version))
            db.execute("INSERT OR REPLACE INTO version VALUES(?, ?)",
                       (key, self.version(key) + 1))

    def has(self, key: str) -> bool:
        if self._absent():
            return False
        return self.db.execute("SELECT 1 FROM pending WHERE key=? LIMIT 1",
                               (key,)).fetchone() is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
