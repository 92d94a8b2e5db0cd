"""The delivery journal: a retried LMTP transaction is saved once, not twice.

An MTA that loses the connection after sending the data (the LMTP process was killed, the
machine rebooted) cannot know whether the message was saved, so it sends it again. Dovecot saves
a second copy then. cote keeps, per mailbox, a small SQLite table of the deliveries of the last
24 hours, keyed by a hash of (recipient, envelope sender, the client's transaction id, message
bytes). Before the new file is renamed into ``new/`` its entry is recorded as *pending* with the
file's Maildir base name; after the rename it is marked *done*. A retry finds the entry: *done*,
or *pending* with the file present in ``new/``/``cur/``, means the mail was saved and the retry
is acknowledged without a second copy; *pending* without the file means the process died before
the rename, and the mail is saved now.

Only transactions that carry an identity are journaled: the ``id`` of the topmost ``Received``
header (Postfix: ``with ESMTP id 4Xyz…``), which the MTA writes once per queued message and
sends unchanged on every retry. Without one (a client that sends the same bytes on purpose,
the benchmark) every delivery is saved, as Dovecot does.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Sequence

JOURNAL_NAME = "cote-delivery-journal.db"
KEEP_SECONDS = 24 * 3600
EXPIRE_EVERY = 256  # expire old entries on about one delivery in this many
_RECEIVED_ID = re.compile(rb"\sid\s+([^\s;]+)", re.IGNORECASE)
PENDING, DONE = 0, 1


def transaction_id(fields: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The ``id`` clause of the topmost Received header (the MTA's queue id), if any."""
    for name, value in fields:
        if name.lower() == b"received":
            match = _RECEIVED_ID.search(b" " + value.replace(b"\n", b" "))
            return match.group(1) if match else None
    return None


def delivery_key(recipient: str, sender: str, txid: bytes, message_digest: bytes) -> str:
    h = hashlib.sha256()
    for part in (recipient.lower().encode("utf-8", "surrogateescape"),
                 sender.encode("utf-8", "surrogateescape"), txid, message_digest):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()


class Journal:
    """One mailbox's journal (in its control directory, beside ``dovecot-uidlist``)."""

    def __init__(self, control_dir: str, mail_dir: str, *, durable: bool) -> None:
        self.mail_dir = mail_dir
        self.db = sqlite3.connect(os.path.join(control_dir, JOURNAL_NAME), timeout=30,
                                  isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'NORMAL' if durable else 'OFF'}")
        self.db.execute("CREATE TABLE IF NOT EXISTS delivery (key TEXT PRIMARY KEY, "
                        "base TEXT NOT NULL, state INTEGER NOT NULL, time REAL NOT NULL)")

    def close(self) -> None:
        self.db.close()

    def already_saved(self, key: str, now: float | None = None) -> bool:
        """Was this delivery saved by an earlier attempt (within the kept window)?"""
        now = time.time() if now is None else now
        row = self.db.execute("SELECT base, state, time FROM delivery WHERE key = ?",
                              (key,)).fetchone()
        if row is None or row[2] < now - KEEP_SECONDS:
            return False
        base, state = str(row[0]), int(row[1])
        if state == DONE:
            return True
        if self._file_exists(base):
            self.mark_done(key)
            return True
        return False

    def _file_exists(self, base: str) -> bool:
        for sub in ("new", "cur"):
            try:
                with os.scandir(os.path.join(self.mail_dir, sub)) as it:
                    if any(e.name.startswith(base + ",") or e.name.startswith(base + ":")
                           or e.name == base for e in it):
                        return True
            except FileNotFoundError:
                continue
        return False

    def record_pending(self, key: str, base: str, now: float | None = None) -> None:
        """Before the rename: the file that will hold this delivery."""
        now = time.time() if now is None else now
        self.db.execute("INSERT OR REPLACE INTO delivery VALUES (?, ?, ?, ?)",
                        (key, base, PENDING, now))
        if int.from_bytes(os.urandom(2), "big") % EXPIRE_EVERY == 0:
            self.db.execute("DELETE FROM delivery WHERE time < ?", (now - KEEP_SECONDS,))

    def mark_done(self, key: str) -> None:
        self.db.execute("UPDATE delivery SET state = ? WHERE key = ?", (DONE, key))


def pending_base(transaction: object) -> str | None:
    """The Maildir base name of the message just added to an append transaction (None for a
    storage that does not name files that way, e.g. mbox: its deliveries are not journaled)."""
    pending = getattr(transaction, "pending", None)
    if not pending:
        return None
    base = getattr(pending[-1], "base", None)
    return base if isinstance(base, str) else None


_open: dict[tuple[str, str, bool], Journal] = {}
KEEP_OPEN = 32  # journals kept open per process (opening and closing a WAL database costs
                # a checkpoint each time; an LMTP process delivers to the same users again)


def open_journal(box: object, fsync: str) -> Journal | None:
    """The journal of a Maildir mailbox opened for append (kept open for the next delivery
    in this process), else None."""
    control, path = getattr(box, "control", None), getattr(box, "path", None)
    if not isinstance(control, str) or not isinstance(path, str):
        return None
    key = (control, path, fsync != "never")
    journal = _open.pop(key, None)
    if journal is None:
        journal = Journal(control, path, durable=key[2])
        if len(_open) >= KEEP_OPEN:
            _open.pop(next(iter(_open))).close()
    _open[key] = journal  # most recently used last
    return journal


__all__ = ["Journal", "delivery_key", "open_journal", "pending_base", "transaction_id"]
