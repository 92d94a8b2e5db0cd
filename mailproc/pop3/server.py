"""The I/O side of a POP3 mail session: bytes between the client and the sans-IO core.

One process serves one user (as Dovecot's pop3 does), so storage calls may block: they touch
only this user's files, and the client is served by a blocking loop (``poll()`` for the
silence timers), not an event loop. Message bodies are streamed from disk in 64 KiB reads
through the dot-stuffing encoder; RETR of a 50 MB message never holds it in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from cote.log import Logger
from cote.mailproc.channel import Channel
from cote.mailproc.pop3 import wire
from cote.mailproc.pop3.maildrop import Maildrop, Pop3Settings, logout_values
from cote.mailproc.pop3.session import (
    ClearSeen,
    Disconnect,
    Pop3Session,
    Reply,
    SendMessage,
    Update,
)
from cote.storage import StorageError
from cote.storage.errors import MessageGone
from cote.variables import VariableError, expand

READ_CHUNK = 65536
# Dovecot's pop3 reads commands into a 2048-byte buffer: a line whose LF does not fit is too
# long (so at most 2047 bytes before the LF).
MAX_LINE = 2047
LOGGED_IN = b"+OK Logged in.\r\n"
# A session that waits for its client this long touches its session lock (Dovecot's goes
# stale after 5 minutes; its clients may idle for 10).
LOCK_REFRESH_SECS = 60.0
# Dovecot's CLIENT_IDLE_TIMEOUT_MSECS: a silent client is told so and disconnected.
IDLE_TIMEOUT_SECS = 600.0
LOCKED = b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"


def serve(chan: Channel, maildrop: Maildrop, log: Logger, *, pipelined: bytes = b"",
          greeting: bytes = LOGGED_IN, user_vars: Mapping[str, str | None] | None = None) -> str:
    """Run one session to its end and close ``chan`` (after the logout line is logged);
    returns the disconnect reason. See ``_serve``."""
    try:
        return _serve(chan, maildrop, log, pipelined=pipelined, greeting=greeting,
                      user_vars=user_vars)
    finally:
        chan.close()


def _serve(chan: Channel, maildrop: Maildrop, log: Logger, *, pipelined: bytes,
           greeting: bytes, user_vars: Mapping[str, str | None] | None) -> str:
    """The session; returns the disconnect reason (for the log line).
    ``user_vars`` (``user``, ``home``, ``remote_ip``...) also serve the logout line, where
    the POP3 variables win a clash (``%u``, ``%s``, ``%p``, ``%i``), as in Dovecot."""
    session = maildrop.session()
    lines = wire.LineReader(MAX_LINE)
    bytes_in = len(pipelined)
    out = Counter(chan)
    out.write(greeting)
    reason = "Connection closed"
    pending = pipelined
    try:
        while not session.quitting:
            out.drain()  # the greeting, or what the last batch of commands wrote
            data = pending or _read(chan, maildrop)
            pending = b""
            if not data:
                break
            bytes_in += len(data)
            for item in lines.feed(data):
                if isinstance(item, wire.LineTooLong):  # Dovecot hangs up
                    out.write(wire.err("Input line too long."))
                    reason = "Input line too long"
                    session.quitting = True
                    break
                action = session.handle(item)
                if isinstance(action, Reply):
                    out.write(action.data)
                elif isinstance(action, SendMessage):
                    _send_message(out, maildrop, session, action)
                elif isinstance(action, ClearSeen):
                    try:
                        maildrop.clear_seen()
                    except (OSError, StorageError) as e:  # Dovecot answers +OK all the same
                        log.error(f"Failed to remove \\Seen flags: {e}")
                    out.write(action.data)
                elif isinstance(action, Disconnect):
                    out.write(action.data)
                    if action.error:
                        log.error(action.error)
                    reason = action.reason
                    break
                else:
                    assert isinstance(action, Update)
                    reason = _commit(out, maildrop, session, log)
                    break
    except ConnectionError:
        reason = "Connection closed"
    except IdleTimeout:
        out.write(wire.err("Disconnected for inactivity."))
        reason = "Disconnected for inactivity"
    finally:
        try:
            out.drain()
        except ConnectionError:
            pass
        # Dovecot commits the session's transaction on any disconnect: UIDLs sent are saved
        # even without QUIT (deletions and \\Seen are not).
        try:
            maildrop.save_uidls()
        except (OSError, StorageError) as e:
            log.error(f"Failed to save POP3 UIDLs: {e}")
    text = _logout_text(maildrop, session, bytes_in, out.count, user_vars or {})
    log.info(f"Disconnected: {reason} {text}")
    return reason


class IdleTimeout(Exception):
    """The client sent nothing for IDLE_TIMEOUT_SECS."""


def _read(chan: Channel, maildrop: Maildrop) -> bytes:
    """The next input; while the client is silent the session lock is kept fresh, and after
    10 minutes of silence the session ends."""
    maildrop.idle()
    deadline = time.monotonic() + IDLE_TIMEOUT_SECS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise IdleTimeout
        if chan.readable(min(left, LOCK_REFRESH_SECS)):
            return chan.recv(READ_CHUNK)
        if deadline - time.monotonic() > 0:
            maildrop.idle()


def refuse_locked(sock_send: Callable[[bytes], object], settings: Pop3Settings,
                  log: Logger) -> None:
    """``pop3_lock_session``: another session holds the maildrop (Dovecot's reply and log)."""
    sock_send(LOCKED)
    empty = Pop3Session([], [])
    values = logout_values(empty, 0, len(LOCKED))
    log.info(f"Disconnected: Couldn't lock POP3 session "
             f"{_expand_logout(settings.logout_format, values)}")


class Counter:
    """A writer that counts what it sends (the logout line's out=) and sends what a command
    batch wrote in one piece at :meth:`drain` (one send() per batch, not one per line)."""

    def __init__(self, chan: Channel) -> None:
        self.chan = chan
        self.count = 0
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.count += len(data)
        self._pending.append(data)

    def drain(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            self.chan.send(data)


def _send_message(out: Counter, maildrop: Maildrop, session: Pop3Session,
                        action: SendMessage) -> None:
    quirks = maildrop.settings.workarounds
    encoder = wire.MessageEncoder(action.body_lines, no_nuls="outlook-no-nuls" in quirks,
                                  add_eoh="oe-ns-eoh" in quirks)
    try:
        f = maildrop.open(action.index)
    except MessageGone:  # expunged by another session (IMAP) since this one began
        out.write(wire.err(f"Message {action.index + 1} expunged."))
        return
    out.write(action.status)
    with f:
        while not encoder.done:
            chunk = f.read(READ_CHUNK)
            if not chunk:
                break
            out.write(encoder.encode(chunk))
            out.drain()
    out.write(encoder.finish())
    session.message_sent(action, len(action.status) + encoder.sent)


def _commit(out: Counter, maildrop: Maildrop, session: Pop3Session, log: Logger) -> str:
    try:
        expunged = maildrop.commit(session)
    except (OSError, StorageError) as e:
        log.error(f"Failed to commit POP3 deletions: {e}")
        out.write(session.finish_update(ok=False))
        return "Logged out"
    out.write(session.finish_update(ok=True, expunged=expunged))
    return "Logged out"


def _logout_text(maildrop: Maildrop, session: Pop3Session, bytes_in: int, bytes_out: int,
                 user_vars: Mapping[str, str | None]) -> str:
    values: dict[str, str | None] = dict(user_vars)
    values.update(maildrop.logout_values(session, bytes_in, bytes_out))
    return _expand_logout(maildrop.settings.logout_format, values)


def _expand_logout(template: str, values: Mapping[str, str | None]) -> str:
    try:
        return expand(template, values)
    except VariableError as e:
        return f"(pop3_logout_format: {e})"
