"""The sans-IO IMAP protocol core shared by the login process and the IMAP mail process.

``Connection`` (bytes in, events out), the typed command values of ``commands`` and
``values``, and the response formatter of ``response``.
"""

from __future__ import annotations

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
from .response import FetchResponse, FileSpan, Writer
from .values import FetchAtt, Mailbox, SearchKey, Section, SeqSet

__all__ = ["CLOSED", "NEED_DATA", "AuthResponse", "Bad", "Bye", "Command", "CommandEnd",
           "Connection", "FetchAtt", "FetchResponse", "FileSpan", "IdleDone", "LiteralChunk",
           "LiteralEnd", "LiteralStart", "Mailbox", "SearchKey", "Section", "SeqSet", "Writer"]
