"""The asyncio side of an IMAP mail session: bytes between a socket and the sans-IO core.

It feeds the socket's bytes to the ``Connection``, runs each event's handler generator, and
sends the writer's contents whenever a handler pauses (the writer is past its high-water
mark) and after each batch of events, so output never piles up. In IDLE it also waits on
the mailbox's change watcher (another process delivered, expunged or flagged) and on the
``imap_idle_notify_interval`` timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Protocol

from cote.log import Logger
from cote.storage.api import ChangeWatcher
from cote.variables import VariableError, compile_template

from . import events as ev
from .connection import Connection
from .hibernate_session import can_hibernate
from .response import ShortSpan
from .session import Session

READ_CHUNK = 65536
AUTOLOGOUT = 30 * 60.0
"""Dovecot's imap autologout: a client silent this long (outside IDLE) is disconnected."""
SEND_CHUNK = 1 << 20


class Sink(Protocol):
    """What the session writes to: an ``asyncio.StreamWriter`` or a plain file."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Blocking writes to a descriptor asyncio cannot watch (a regular file as stdout)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


class Output:
    """The socket writer plus the byte count for the logout line."""

    def __init__(self, writer: Sink) -> None:
        self.writer = writer
        self.count = 0

    async def flush(self, conn: Connection) -> None:
        while conn.writer.pending:
            data = conn.writer.take(SEND_CHUNK)
            if not data:
                break
            self.count += len(data)
            self.writer.write(data)
            await self.writer.drain()


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


async def serve(reader: asyncio.StreamReader, writer: Sink, session: Session,
                log: Logger, *, pipelined: bytes = b"", greeting: bytes | None = None,
                hibernation: Hibernation | None = None, watcher: ChangeWatcher | None = None,
                bytes_in: int = 0, bytes_out: int = 0) -> str:
    """Run one session to its end; returns the disconnect reason (also logged).
    ``watcher``, ``bytes_in``/``bytes_out``: a session restored from hibernation goes on
    with its mailbox watcher and its counters."""
    conn = session.conn
    out = Output(writer)
    out.count = bytes_out
    conn.send(session.greeting() if greeting is None else greeting)
    reason = "Connection closed"
    loop = asyncio.get_running_loop()
    pending = pipelined
    session.stats.bytes_in = bytes_in + len(pipelined)
    read_task: asyncio.Task[bytes] | None = None
    wake = asyncio.Event()
    if watcher is not None:
        loop.add_reader(watcher.fileno(), wake.set)
    idle_since = time.monotonic()
    idle_wall = hibernation.idle_started if hibernation is not None else None
    idle_wall = idle_wall if idle_wall is not None else time.time()
    try:
        await out.flush(conn)
        if pending:
            conn.receive_data(pending)
        while True:
            closed = await _run_events(conn, session, out)
            if session.logged_out:
                reason = session.disconnect_reason if not closed else reason
                break
            if closed:
                break
            if session.idling is not None and session.box is not None and watcher is None:
                idle_since, idle_wall = time.monotonic(), time.time()
                try:
                    watcher = session.box.watch()
                    loop.add_reader(watcher.fileno(), wake.set)
                except (OSError, ValueError):
                    watcher = None
            elif session.idling is None and watcher is not None:
                _stop_watch(loop, watcher)
                watcher = None
            if session.idling is None:
                idle_since, idle_wall = time.monotonic(), time.time()
            if read_task is None:
                read_task = asyncio.ensure_future(reader.read(READ_CHUNK))
            waits: set[asyncio.Future[object]] = {read_task}  # type: ignore[arg-type]
            wake_task: asyncio.Task[bool] | None = None
            if session.idling is not None:
                wake.clear()
                wake_task = asyncio.ensure_future(wake.wait())
                waits.add(wake_task)  # type: ignore[arg-type]
                timeout: float | None = session.settings.idle_notify_interval
                hibernate_in = _hibernate_in(hibernation, idle_since)
                if hibernate_in is not None and timeout is not None:
                    timeout = min(timeout, hibernate_in)
            else:
                timeout = AUTOLOGOUT
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done and hibernation is not None and session.idling is not None and \
                    _hibernate_in(hibernation, idle_since) == 0.0:
                if wake_task is not None:
                    wake_task.cancel()
                if await _hand_off(reader, writer, read_task, session,
                                   hibernation=hibernation, watcher=watcher,
                                   bytes_out=out.count, idle_wall=idle_wall):
                    read_task = None
                    reason = HIBERNATING
                    break
                idle_since = time.monotonic()  # not now: try again after another timeout
                continue
            if not done and session.idling is None:
                conn.send(b"* BYE Disconnected for inactivity.\r\n")
                reason = f"Inactivity - no input for {int(AUTOLOGOUT)} secs"
                break
            if wake_task is not None and not wake_task.done():
                wake_task.cancel()
            if read_task in done:
                data = read_task.result()
                read_task = None
                session.stats.bytes_in += len(data)
                conn.receive_data(data)
                if not data:
                    _ = await _run_events(conn, session, out)
                    break
            elif session.idling is not None:
                if watcher is not None:
                    watcher.drain()
                session.idle_wakeup()
                if not done:  # the notify interval passed with no change
                    conn.send(b"* OK Still here\r\n")
                await out.flush(conn)
    except (ConnectionError, asyncio.IncompleteReadError, ShortSpan):
        reason = "Connection closed"
    finally:
        if read_task is not None:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await read_task
        if watcher is not None:
            _stop_watch(loop, watcher)
        with contextlib.suppress(ConnectionError, ShortSpan):
            await out.flush(conn)
        writer.close()
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


async def _hand_off(reader: asyncio.StreamReader, writer: Sink,
                    read_task: asyncio.Task[bytes] | None, session: Session, *,
                    hibernation: Hibernation, watcher: ChangeWatcher | None, bytes_out: int,
                    idle_wall: float) -> bool:
    """Stop reading, make sure no client byte sits in this process (it would be lost with
    the hand-off: the kernel's buffer goes with the socket, asyncio's does not), then hand
    off. On any doubt the session stays here."""
    if not can_hibernate(session) or (session.box is not None and watcher is None):
        return False  # (no watcher: the mailbox's directories are not known here)
    transport = getattr(writer, "transport", None)
    if transport is None:
        return False
    transport.pause_reading()
    for _ in range(2):  # let a read woken by data that already arrived complete
        await asyncio.sleep(0)
    if (read_task is not None and read_task.done()) or \
            len(getattr(reader, "_buffer", b"")) or reader.at_eof():
        transport.resume_reading()
        return False
    if hibernation.hand_off(session, watcher, bytes_out, idle_wall):
        if read_task is not None:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await read_task
        return True
    transport.resume_reading()
    return False


def _stop_watch(loop: asyncio.AbstractEventLoop, watcher: ChangeWatcher) -> None:
    with contextlib.suppress(OSError, ValueError):
        loop.remove_reader(watcher.fileno())
    with contextlib.suppress(OSError):
        watcher.close()


async def _run_events(conn: Connection, session: Session, out: Output) -> bool:
    """Handle every complete event; True when the connection ended."""
    while True:
        event = conn.next_event()
        if event is ev.NEED_DATA:
            await out.flush(conn)
            return False
        if event is ev.CLOSED:
            await out.flush(conn)
            return True
        try:
            for _ in session.handle(event):
                await out.flush(conn)
        except (ConnectionError, ShortSpan):
            raise
        except Exception as e:
            session.log_error(f"Internal error: {type(e).__name__}: {e}")
            conn.send(b"* BAD Internal error occurred. Refer to server log for more "
                      b"information.\r\n")
        if session.logged_out:
            await out.flush(conn)
            return False


def logout_text(session: Session) -> str:
    try:
        return compile_template(session.settings.logout_format).expand(session.stats.values())
    except VariableError as e:
        return f"(imap_logout_format: {e})"
