"""Private flags of a shared or public mailbox (``INDEXPVT=<dir>`` in its location).

Dovecot keeps the accessing user's ``\\Seen`` (its only private flag without the acl plugin)
in ``dovecot.index.pvt`` under that directory, so reading another user's mail does not mark it
read for its owner or for anyone else. cote keeps the same state in
``<dir>/cote.index.pvt.sqlite``, a file of the accessing user: per mailbox (the owner store's
index key) and UIDVALIDITY, the UIDs this user has seen. New messages start unseen.
"""

from __future__ import annotations

import os
import sqlite3

from cote.storage.sqltx import immediate

NAME = "cote.index.pvt.sqlite"

_SCHEMA = ("CREATE TABLE IF NOT EXISTS seen(key TEXT NOT NULL, uidvalidity INTEGER NOT NULL, "
           "uid INTEGER NOT NULL, PRIMARY KEY(key, uid)) WITHOUT ROWID",
           "CREATE TABLE IF NOT EXISTS version(key TEXT PRIMARY KEY, n INTEGER NOT NULL)")


class PrivateFlags:
    """The accessing user's private ``\\Seen`` of one store; opened at first use."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            db = sqlite3.connect(os.path.join(self.directory, NAME), timeout=60.0,
                                 isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                db.execute(stmt)
            self._db = db
        return self._db

    def version(self, key: str) -> int:
        """Bumped by every change: the user's other sessions take the new state in."""
        row = self.db.execute("SELECT n FROM version WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def seen(self, key: str, uidvalidity: int) -> set[int]:
        rows = self.db.execute("SELECT uid FROM seen WHERE key=? AND uidvalidity=?",
                               (key, uidvalidity))
        return {uid for (uid,) in rows}

    def set_seen(self, key: str, uidvalidity: int, uids: list[int], seen: bool) -> None:
        with immediate(self.db) as db:
            # another UIDVALIDITY's UIDs name other messages: forget them
            db.execute("DELETE FROM seen WHERE key=? AND uidvalidity!=?", (key, uidvalidity))
            db.execute("INSERT OR REPLACE INTO version VALUES(?, ?)",
                       (key, self.version(key) + 1))
            if seen:
                db.executemany("INSERT OR IGNORE INTO seen VALUES(?, ?, ?)",
                               [(key, uidvalidity, u) for u in uids])
            else:
                db.executemany("DELETE FROM seen WHERE key=? AND uid=?",
                               [(key, u) for u in uids])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
