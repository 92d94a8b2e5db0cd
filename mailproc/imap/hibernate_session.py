"""Capturing an IDLE ``Session`` into a ``HibernateState`` and restoring one, sans-IO.

``capture`` is taken only when nothing is pending (``can_hibernate``): no unsent output, no
flag update or STORE line waiting, no APPEND, no input buffered: the client has been told
everything, so the view in the record is exactly what it knows. ``restore`` re-opens the
mailbox in a new process and compares the disk with that view, writing what a session that
never slept would have written by now: FETCH FLAGS (with MODSEQ under CONDSTORE) numbered as
the client knows the messages, then EXPUNGEs (descending) or VANISHED under QRESYNC, EXISTS
and RECENT; the mailbox's SELECT responses are not repeated. The session is left in IDLE.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator
from dataclasses import fields

from cote.storage.api import ChangeWatcher, SyncChanges

from . import events as ev
from . import response as R
from .hibernate_state import HibernateState, MailboxView
from .session import Session, Stats


class RestoredSession(Session):
    """A session restored from hibernation. Its IDLE began in an earlier process, so the
    DONE that ends it is answered as Dovecot's restored imap answers it: ``OK Idle
    completed.`` without the timing suffix (there is no command timing to tell)."""

    restored_idle = False

    def handle(self, event: ev.Event) -> Iterator[None]:
        if isinstance(event, ev.IdleDone) and self.restored_idle:
            self.restored_idle = False
            self.idling = None
            self.sync_and_report(uid=False)
            self.writer.write(R.tagged(event.tag, "OK", "Idle completed."))
            self.last_finished = time.monotonic()
            return iter(())
        self.restored_idle = False
        return super().handle(event)


def can_hibernate(session: Session) -> bool:
    """True when the session is in IDLE with nothing the client has not been told."""
    return (session.idling is not None and not session.logged_out
            and session.unfinished_append() is None and not session.writer.pending
            and not session.unreported_flags and not session.pending_fetches
            and not session.conn.buffered)


def capture(session: Session, *, session_id: str, remote_ip: str, local_ip: str,
            idle_started: float, bytes_out: int) -> HibernateState:
    """The record for an IDLE session (``can_hibernate`` must be true)."""
    assert session.idling is not None
    stats = {f.name: int(getattr(session.stats, f.name)) for f in fields(Stats)}
    stats["bytes_out"] = bytes_out
    view = None
    box = session.box
    if box is not None:
        view = MailboxView(
            name=box.name, readonly=session.readonly, uidvalidity=box.uidvalidity,
            highestmodseq=box.highestmodseq, uids=array("I", box.uids),
            modseqs=array("Q", box.modseqs), flags=list(box.flags),
            recent=sorted(session.recent), reported_recent=session.reported_recent,
            keyword_count=session.keyword_count,
            local_keywords=list(session.local_keywords.get(box.name, [])))
    return HibernateState(
        user=session.user, session=session_id, remote_ip=remote_ip, local_ip=local_ip,
        idle_tag=session.idling, idle_started=idle_started,
        enabled=sorted(session.enabled), condstore=session.condstore, stats=stats,
        mailbox=view)


def view_changes(view: MailboxView, uids: array[int] | list[int], flags: list[int],
                 modseqs: array[int] | list[int]) -> SyncChanges:
    """What changed between the client's view and the mailbox now (``uids``/``flags``/
    ``modseqs`` as the mailbox has them): expunged UIDs with their old sequence numbers,
    how many are new, and the UIDs whose flags or modseq moved."""
    now = {u: i for i, u in enumerate(uids)}
    expunged: list[int] = []
    expunged_seqs: list[int] = []
    changed: list[int] = []
    for i, u in enumerate(view.uids):
        j = now.get(u)
        if j is None:
            expunged.append(u)
            expunged_seqs.append(i + 1)
        elif flags[j] != view.flags[i] or modseqs[j] != view.modseqs[i]:
            changed.append(u)
    new = len(uids) - (len(view.uids) - len(expunged))
    return SyncChanges(expunged=expunged, new=max(0, new), flags_changed=changed,
                       expunged_seqs=tuple(expunged_seqs))


def restore(session: Session, state: HibernateState) -> ChangeWatcher | None:
    """Bring a fresh session (same user, same settings) to where ``state`` left it, and
    write the updates the client missed; the mailbox's watcher, started before the mailbox
    is compared with the view so that no change falls between the two. Storage errors
    propagate (the caller says BYE)."""
    watcher: ChangeWatcher | None = None
    session.enabled = set(state.enabled)
    session.conn.enabled = frozenset(session.enabled)
    session.condstore = state.condstore
    for f in fields(Stats):
        if f.name in state.stats:
            setattr(session.stats, f.name, state.stats[f.name])
    view = state.mailbox
    if view is not None:
        box = session.mailboxes.open(view.name, readonly=view.readonly)
        session.box = box
        try:
            watcher = box.watch()
        except (OSError, ValueError):
            watcher = None
        session.readonly = view.readonly
        if view.local_keywords:
            session.local_keywords[box.name] = list(view.local_keywords)
        session.keyword_count = view.keyword_count
        present = set(box.uids)
        session.recent = {u for u in view.recent if u in present}
        # Dovecot's restore sends RECENT only with EXISTS (not for expunged \Recent mail)
        session.reported_recent = len(session.recent)
        if box.uidvalidity != view.uidvalidity:
            changes = SyncChanges([], 0, [], uidvalidity_changed=True)
        else:
            changes = view_changes(view, box.uids, box.flags, box.modseqs)
            if changes.new:
                session.reported_recent = -1  # Dovecot's restore sends RECENT with EXISTS
        session.report(changes, uid=False)
    session.idling = state.idle_tag
    session.conn.idle(state.idle_tag)
    session.current_tag = state.idle_tag
    session.last_command = "IDLE"
    session.last_started = time.monotonic() - max(0.0, time.time() - state.idle_started)
    session.last_finished = None
    if isinstance(session, RestoredSession):
        session.restored_idle = True
    return watcher
