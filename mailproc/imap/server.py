"""The I/O side of an IMAP mail session: bytes between the client and the sans-IO core.

It feeds the client's bytes to the ``Connection``, runs each event's handler generator, and
sends the writer's contents whenever a handler pauses (the writer is past its high-water
mark) and after each batch of events, so output never piles up. In IDLE it also waits on
the mailbox's change watcher (another process delivered, expunged or flagged) and on the
``imap_idle_notify_interval`` timer. A mail process serves one client, so this is a
blocking loop around ``poll()`` (``cote.mailproc.channel``), not an event loop.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Protocol

from cote.log import Logger
from cote.mailproc.channel import Channel
from cote.storage.api import ChangeWatcher
from cote.variables import VariableError, expand

from . import events as ev
from .connection import Connection
from .hibernate_session import can_hibernate
from .response import ShortSpan
from .session import Session

READ_CHUNK = 65536
AUTOLOGOUT = 30 * 60.0
"""Dovecot's imap autologout: a client silent this long (outside IDLE) is disconnected."""
SEND_CHUNK = 1 << 20


class Output:
    """The client's channel plus the byte count for the logout line."""

    def __init__(self, chan: Channel) -> None:
        self.chan = chan
        self.count = 0

    def flush(self, conn: Connection) -> None:
        while conn.writer.pending:
            data = conn.writer.take(SEND_CHUNK)
            if not data:
                break
            self.count += len(data)
            self.chan.send(data)


class HandOff(Protocol):
    """Gives the IDLE session to imap-hibernate (``hibernate.hand_off``); True when it took
    the client (this process then ends the session without closing the connection)."""

    def __call__(self, session: Session, watcher: ChangeWatcher | None, bytes_out: int,
                 idle_started: float) -> bool: ...


@dataclass
class Hibernation:
    """``imap_hibernate_timeout`` (seconds in IDLE before the hand-off) and the hand-off."""

    timeout: float
    hand_off: HandOff
    idle_started: float | None = None
    """Wall-clock start of the IDLE a restored session is in (None: a new IDLE)."""


HIBERNATING = "Hibernating"


def serve(chan: Channel, session: Session, log: Logger, *, pipelined: bytes = b"",
          greeting: bytes | None = None, hibernation: Hibernation | None = None,
          watcher: ChangeWatcher | None = None, bytes_in: int = 0,
          bytes_out: int = 0) -> str:
    """Run one session to its end and close ``chan`` (after the logout line is logged);
    returns the disconnect reason. ``watcher``, ``bytes_in``/``bytes_out``: a session
    restored from hibernation goes on with its mailbox watcher and its counters."""
    try:
        return _serve(chan, session, log, pipelined=pipelined, greeting=greeting,
                      hibernation=hibernation, watcher=watcher, bytes_in=bytes_in,
                      bytes_out=bytes_out)
    finally:
        chan.close()


def _serve(chan: Channel, session: Session, log: Logger, *, pipelined: bytes,
           greeting: bytes | None, hibernation: Hibernation | None,
           watcher: ChangeWatcher | None, bytes_in: int, bytes_out: int) -> str:
    conn = session.conn
    out = Output(chan)
    out.count = bytes_out
    conn.send(session.greeting() if greeting is None else greeting)
    reason = "Connection closed"
    session.stats.bytes_in = bytes_in + len(pipelined)
    if watcher is not None:
        chan.watch(watcher.fileno())
    idle_since = time.monotonic()
    idle_wall = hibernation.idle_started if hibernation is not None else None
    idle_wall = idle_wall if idle_wall is not None else time.time()
    try:
        out.flush(conn)
        if pipelined:
            conn.receive_data(pipelined)
        while True:
            closed = _run_events(conn, session, out)
            if session.logged_out:
                reason = session.disconnect_reason if not closed else reason
                break
            if closed:
                break
            if session.idling is not None and session.box is not None and watcher is None:
                idle_since, idle_wall = time.monotonic(), time.time()
                try:
                    watcher = session.box.watch()
                    chan.watch(watcher.fileno())
                except (OSError, ValueError):
                    watcher = None
            elif session.idling is None and watcher is not None:
                _stop_watch(chan, watcher)
                watcher = None
            if session.idling is None:
                idle_since, idle_wall = time.monotonic(), time.time()
            timeout: float | None
            if session.idling is not None:
                timeout = session.settings.idle_notify_interval
                hibernate_in = _hibernate_in(hibernation, idle_since)
                if hibernate_in is not None and timeout is not None:
                    timeout = min(timeout, hibernate_in)
            else:
                timeout = AUTOLOGOUT
            ready = chan.wait(timeout)
            if not ready and hibernation is not None and session.idling is not None and \
                    _hibernate_in(hibernation, idle_since) == 0.0:
                if _hand_off(chan, session, hibernation=hibernation, watcher=watcher,
                             bytes_out=out.count, idle_wall=idle_wall):
                    reason = HIBERNATING
                    break
                idle_since = time.monotonic()  # not now: try again after another timeout
                continue
            if not ready and session.idling is None:
                conn.send(b"* BYE Disconnected for inactivity.\r\n")
                reason = f"Inactivity - no input for {int(AUTOLOGOUT)} secs"
                break
            if chan.in_fd in ready:
                data = chan.recv(READ_CHUNK)
                session.stats.bytes_in += len(data)
                conn.receive_data(data)
                if not data:
                    _run_events(conn, session, out)
                    break
            elif session.idling is not None:
                if watcher is not None:
                    watcher.drain()
                session.idle_wakeup()
                if not ready:  # the notify interval passed with no change
                    conn.send(b"* OK Still here\r\n")
                out.flush(conn)
    except (ConnectionError, ShortSpan):
        reason = "Connection closed"
    finally:
        if watcher is not None:
            _stop_watch(chan, watcher)
        if reason != HIBERNATING:
            with contextlib.suppress(ConnectionError, ShortSpan):
                out.flush(conn)
        session.stats.bytes_out = out.count
        session.close()
    if reason == HIBERNATING:
        log.info(f"Disconnected: {reason}")
        return reason
    if reason == "Connection closed":
        reason += f" ({session.last_command_status()})"
    log.info(f"Disconnected: {reason} {logout_text(session)}")
    return reason


def _hibernate_in(hibernation: Hibernation | None, idle_since: float) -> float | None:
    """Seconds until the IDLE session is due to hibernate (0.0: now); None: never."""
    if hibernation is None or hibernation.timeout <= 0:
        return None
    return max(0.0, idle_since + hibernation.timeout - time.monotonic())


def _hand_off(chan: Channel, session: Session, *, hibernation: Hibernation,
              watcher: ChangeWatcher | None, bytes_out: int, idle_wall: float) -> bool:
    """Hand off only when no client byte waits (it would have to be read here first); on
    any doubt the session stays here. Nothing is read ahead of the ``Connection``, so the
    kernel's buffer, which goes with the socket, is all there is."""
    if not can_hibernate(session) or (session.box is not None and watcher is None):
        return False  # (no watcher: the mailbox's directories are not known here)
    if chan.sock is None or chan.readable(0):
        return False
    return hibernation.hand_off(session, watcher, bytes_out, idle_wall)


def _stop_watch(chan: Channel, watcher: ChangeWatcher) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        chan.watch(None)
    with contextlib.suppress(OSError):
        watcher.close()


def _run_events(conn: Connection, session: Session, out: Output) -> bool:
    """Handle every complete event; True when the connection ended."""
    while True:
        event = conn.next_event()
        if event is ev.NEED_DATA:
            out.flush(conn)
            return False
        if event is ev.CLOSED:
            out.flush(conn)
            return True
        try:
            for _ in session.handle(event):
                out.flush(conn)
        except (ConnectionError, ShortSpan):
            raise
        except Exception as e:
            session.log_error(f"Internal error: {type(e).__name__}: {e}")
            conn.send(b"* BAD Internal error occurred. Refer to server log for more "
                      b"information.\r\n")
        if session.logged_out:
            out.flush(conn)
            return False


def logout_text(session: Session) -> str:
    try:
        return expand(session.settings.logout_format, session.stats.values())
    except VariableError as e:
        return f"(imap_logout_format: {e})"
