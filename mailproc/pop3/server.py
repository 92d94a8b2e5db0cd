"""The asyncio side of a POP3 mail session: bytes between a socket and the sans-IO core.

One process serves one user (as Dovecot's pop3 does), so storage calls may block: they touch
only this user's files. Message bodies are streamed from disk in 64 KiB reads through the
dot-stuffing encoder; RETR of a 50 MB message never holds it in memory.
"""

from __future__ import annotations

import asyncio

from cote.log import Logger
from cote.mailproc.pop3 import wire
from cote.mailproc.pop3.maildrop import Maildrop
from cote.mailproc.pop3.session import Pop3Session, Reply, SendMessage, Update
from cote.variables import VariableError, compile_template

READ_CHUNK = 65536
LOGGED_IN = b"+OK Logged in.\r\n"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, maildrop: Maildrop,
                log: Logger, *, pipelined: bytes = b"", greeting: bytes = LOGGED_IN) -> str:
    """Run one session to its end; returns the disconnect reason (for the log line)."""
    session = maildrop.session()
    lines = wire.LineReader()
    bytes_in = len(pipelined)
    out = Counter(writer)
    out.write(greeting)
    reason = "Connection closed"
    pending = pipelined
    try:
        while not session.quitting:
            data = pending or await reader.read(READ_CHUNK)
            pending = b""
            if not data:
                break
            bytes_in += len(data)
            for item in lines.feed(data):
                if isinstance(item, wire.LineTooLong):
                    out.write(wire.err("Input line too long."))
                    continue
                action = session.handle(item)
                if isinstance(action, Reply):
                    out.write(action.data)
                elif isinstance(action, SendMessage):
                    await _send_message(out, maildrop, session, action)
                else:
                    assert isinstance(action, Update)
                    reason = _commit(out, maildrop, session, log)
                    break
            await out.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        reason = "Connection closed"
    finally:
        try:
            await out.drain()
        except ConnectionError:
            pass
        writer.close()
    log.info(f"Disconnected: {reason} {_logout_text(maildrop, session, bytes_in, out.count)}")
    return reason


class Counter:
    """A writer that counts what it sends (the logout line's out=)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.count = 0

    def write(self, data: bytes) -> None:
        self.count += len(data)
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()


async def _send_message(out: Counter, maildrop: Maildrop, session: Pop3Session,
                        action: SendMessage) -> None:
    quirks = maildrop.settings.workarounds
    encoder = wire.MessageEncoder(action.body_lines, no_nuls="outlook-no-nuls" in quirks,
                                  add_eoh="oe-ns-eoh" in quirks)
    out.write(action.status)
    with maildrop.open(action.index) as f:
        while not encoder.done:
            chunk = f.read(READ_CHUNK)
            if not chunk:
                break
            out.write(encoder.encode(chunk))
            await out.drain()
    complete = not encoder.done
    out.write(encoder.finish())
    session.message_sent(action, len(action.status) + encoder.sent, complete=complete)


def _commit(out: Counter, maildrop: Maildrop, session: Pop3Session, log: Logger) -> str:
    try:
        expunged = maildrop.commit(session)
    except OSError as e:
        log.error(f"Failed to commit POP3 deletions: {e}")
        out.write(session.finish_update(ok=False))
        return "Logged out"
    out.write(session.finish_update(ok=True, expunged=expunged))
    return "Logged out"


def _logout_text(maildrop: Maildrop, session: Pop3Session, bytes_in: int, bytes_out: int) -> str:
    values = maildrop.logout_values(session, bytes_in, bytes_out)
    try:
        return compile_template(maildrop.settings.logout_format).expand(values)
    except VariableError as e:
        return f"(pop3_logout_format: {e})"
