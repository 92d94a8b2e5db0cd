"""The asyncio side of a ManageSieve mail session: bytes between a socket and the session.

One process serves one user, so the session's storage calls may block. The reply to the
login (``OK "Logged in."``) is written here, then what the client pipelined behind its
AUTHENTICATE (carried by the hand-off) is handled before the socket is read.
"""

from __future__ import annotations

import asyncio

from cote.log import Logger
from cote.mailproc.managesieve import wire
from cote.mailproc.managesieve.session import LOGGED_IN, Session
from cote.variables import VariableError, compile_template

READ_CHUNK = 65536
# Pigeonhole's CLIENT_IDLE_TIMEOUT (as its IMAP's): a silent client is told so and dropped.
IDLE_TIMEOUT_SECS = 1800.0


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session,
                log: Logger, *, pipelined: bytes = b"", max_line: int = wire.MAX_LINE,
                max_literal: int = wire.MAX_LITERAL, logout_format: str = "bytes=%i/%o",
                idle_timeout: float = IDLE_TIMEOUT_SECS) -> str:
    """Run one session to its end; returns the disconnect reason (for the log line)."""
    parser = wire.Parser(max_line, max_literal=max_literal)
    # in=: octets parsed, less the last command's line end (Pigeonhole's count: it skips a
    # line end when it reads the next command)
    bytes_in = 0
    pending_eol = 0
    bytes_out = len(LOGGED_IN)
    writer.write(LOGGED_IN)
    reason = "Connection closed"
    pending = pipelined
    try:
        while not session.logged_out:
            data = pending or await asyncio.wait_for(reader.read(READ_CHUNK), idle_timeout)
            pending = b""
            if not data:
                break
            for item in parser.feed(data):
                if isinstance(item, wire.Line):
                    bytes_in += pending_eol + item.size - item.eol
                    pending_eol = item.eol
                outcome = session.handle(item)
                for line in outcome.log:
                    log.info(line)
                for line in outcome.errors:
                    log.error(line)
                writer.write(outcome.reply)
                bytes_out += len(outcome.reply)
                if outcome.logout:
                    reason = "Too long argument" if outcome.reply.startswith(b"BYE") \
                        else "Logged out"
                    break
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        reason = "Connection closed"
    except TimeoutError:
        bye = wire.bye("Disconnected for inactivity.")
        writer.write(bye)
        bytes_out += len(bye)
        reason = "Disconnected for inactivity"
    finally:
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
    try:
        detail = compile_template(logout_format).expand({
            "input": str(bytes_in), "output": str(bytes_out), "i": str(bytes_in),
            "o": str(bytes_out), **session.stats.values()})
    except VariableError as e:
        detail = f"(managesieve_logout_format: {e})"
    # Pigeonhole: "Disconnected: Logged out ..." but a client that just goes away is
    # "Connection closed ..." without the prefix.
    prefix = "" if reason == "Connection closed" else "Disconnected: "
    log.info(f"{prefix}{reason} {detail}")
    return reason
