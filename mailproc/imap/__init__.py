"""The sans-IO IMAP protocol core shared by the login process and the IMAP mail process.

A session feeds socket bytes to a ``Connection`` and handles its events::

    conn = Connection(commands=MAIL_COMMANDS)          # Connection(pre_login=True, …) in login
    conn.receive_data(data)                            # b"" at end of stream
    while (event := conn.next_event()) is not NEED_DATA:
        match event:
            case Command(tag, "FETCH", Fetch() as args, uid): ...   # typed arguments
            case Command(tag, "APPEND", Append(mailbox)): ...        # then per message:
            case LiteralStart(): conn.accept_literal()  # or write NO [TOOBIG], reject_literal()
            case LiteralChunk(data): ...                # stream to a temp file
            case LiteralEnd(): ...
            case CommandEnd(tag): ...                   # the APPEND is complete
            case Bad(tag, text): conn.send(response.tagged(tag, "BAD", text))
            case Bye(text): ...                         # send "* BYE text", close
            case _ if event is CLOSED: ...
    sock.send(conn.data_to_send())                     # or conn.writer.drain() for sendfile

IDLE and AUTHENTICATE are modes the server enters (``conn.idle(tag)``,
``conn.authenticate(tag)``) after writing its continuation; STARTTLS and COMPRESS are
``conn.start_tls()`` / ``conn.start_compress()``. After ``Command(APPEND)`` the server may
already answer ``NO [TRYCREATE]``; it then rejects every ``LiteralStart`` and ignores a
``Bad`` that follows.
"""

from __future__ import annotations

from . import response
from .commands import LOGIN_COMMANDS, MAIL_COMMANDS
from .connection import Connection
from .events import (
    CLOSED,
    NEED_DATA,
    AuthResponse,
    Bad,
    Bye,
    Command,
    CommandEnd,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
)
from .response import FetchResponse, FileSpan, Reply, Writer
from .values import FetchAtt, Mailbox, SearchKey, Section, SeqSet

__all__ = ["CLOSED", "LOGIN_COMMANDS", "MAIL_COMMANDS", "NEED_DATA", "AuthResponse", "Bad",
           "Bye", "Command", "CommandEnd", "Connection", "FetchAtt", "FetchResponse",
           "FileSpan", "IdleDone", "LiteralChunk", "LiteralEnd", "LiteralStart", "Mailbox",
           "Reply", "SearchKey", "Section", "SeqSet", "Writer", "response"]
