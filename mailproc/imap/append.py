"""APPEND and MULTIAPPEND: each message literal is spooled as it arrives (memory up to 1 MB,
then a temporary file), added to one append transaction, and all of them become visible at
once when the command ends (APPENDUID lists their UIDs). Any failure rolls the whole command
back, as RFC 3502 asks."""

from __future__ import annotations

import contextlib
import tempfile
import time
from typing import TYPE_CHECKING

from cote.storage.api import AppendTransaction, Mailbox
from cote.storage.errors import StorageError

from . import commands as C
from . import events as ev
from . import response as R
from .values import SeqSet

if TYPE_CHECKING:
    from .session import Session


def close_quietly(box: Mailbox) -> None:
    """Close a view; a failure to close changes nothing the client could act on."""
    with contextlib.suppress(StorageError, OSError):
        box.close()

SPOOL_IN_MEMORY = 1 << 20


class AppendCommand:
    """One APPEND in progress, driven by the connection's literal events."""

    def __init__(self, s: Session, tag: str) -> None:
        self.s = s
        self.tag = tag
        self.started = time.monotonic()
        self.box: Mailbox | None = None
        self.own_box = True
        """False when ``box`` is the session's selected view (not ours to close)."""
        self.tx: AppendTransaction | None = None
        self.failed: R.Reply | None = None
        self.spool: tempfile.SpooledTemporaryFile[bytes] | None = None
        self.flags: tuple[str, ...] = ()
        self.date: float | None = None

    @classmethod
    def start(cls, s: Session, tag: str, args: C.Append) -> AppendCommand:
        """Open the destination (a failure is answered when the first literal comes)."""
        cmd = cls(s, tag)
        err = s.mailbox_name_error(args.mailbox)
        if err:
            cmd.failed = err
            return cmd
        name = args.mailbox.name
        try:
            if not s.mailboxes.exists(name) and name != "INBOX":
                cmd.failed = R.no(f"Mailbox doesn't exist: {name}", "TRYCREATE")
                return cmd
            selected = s.box
            if selected is not None and selected.name == name and not selected.readonly:
                # as COPY does: the selected view saves, no second view opened and synced
                cmd.box, cmd.own_box = selected, False
            else:
                cmd.box = s.open_for_saving(name)
            cmd.tx = cmd.box.begin_append()
        except StorageError as e:
            cmd.failed = s.storage_no(e)
        return cmd

    def event(self, event: ev.Event) -> bool:
        """Handle one literal event; True when the command has been answered."""
        s = self.s
        if isinstance(event, ev.LiteralStart):
            if self.failed is not None or self.tx is None:
                s.conn.reject_literal()
                self.finish(self.failed or R.no(s.SERVERBUG_TEXT, "SERVERBUG"))
                return True
            if event.size == 0:
                s.conn.reject_literal()
                self.finish(R.no("Can't save a zero byte message"))
                return True
            s.conn.accept_literal()
            self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
            self.flags = event.flags
            self.date = event.internal_date.timestamp() if event.internal_date else None
        elif isinstance(event, ev.LiteralChunk):
            if self.spool is not None:
                self.spool.write(event.data)
        elif isinstance(event, ev.LiteralEnd):
            self._add()
        elif isinstance(event, ev.CommandEnd):
            self._commit()
            return True
        return False

    def _add(self) -> None:
        spool, self.spool = self.spool, None
        if spool is None or self.tx is None:
            return
        try:
            spool.seek(0)
            self.tx.add(spool, self.flags, self.date)  # type: ignore[arg-type]
        except StorageError as e:
            self.failed = self.s.storage_no(e)
        finally:
            spool.close()

    def _commit(self) -> None:
        s = self.s
        if self.failed is not None or self.tx is None:
            self.finish(self.failed or R.no(s.SERVERBUG_TEXT, "SERVERBUG"))
            return
        try:
            uids = self.tx.commit()
        except StorageError as e:
            self.finish(s.storage_no(e))
            return
        box = self.box
        assert box is not None
        code = R.appenduid(box.uidvalidity, SeqSet.from_ints(uids))
        self.tx = None
        self._close_box()
        if s.box is not None:
            s.sync_and_report(uid=False)
        s.reply(self.tag, s.ok("APPEND", code), self.started)

    def finish(self, reply: R.Reply) -> None:
        """End with ``reply`` after rolling back whatever was added."""
        self.abort()
        self.s.reply(self.tag, reply, self.started)

    def abort(self) -> None:
        """Drop everything (the client sent something else, or the session ends)."""
        if self.tx is not None:
            try:
                self.tx.rollback()
            except StorageError:
                pass
            self.tx = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self._close_box()

    def _close_box(self) -> None:
        if self.box is not None and self.own_box:
            close_quietly(self.box)
        self.box = None
