"""Events the IMAP connection yields; a command handler consumes these and nothing else."""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Command:
    """A complete command. ``name`` is upper case without ``UID`` (``uid=True`` for the UID
    form); ``args`` is the typed value from ``commands.py`` (``None`` for argument-less
    commands)."""

    tag: str
    name: str
    args: object
    uid: bool = False


@dataclass(frozen=True, slots=True)
class LiteralStart:
    """An APPEND message literal was announced. Before asking for the next event the server
    calls ``accept_literal()`` (``+ OK`` is sent for a synchronizing literal) or
    ``reject_literal()`` after writing its ``NO [TOOBIG]``/``BAD``."""

    size: int
    synchronizing: bool
    binary: bool = False
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class LiteralChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class LiteralEnd:
    pass


@dataclass(frozen=True, slots=True)
class CommandEnd:
    """A streamed command (APPEND) ended correctly; the server writes its tagged reply."""

    tag: str


@dataclass(frozen=True, slots=True)
class Bad:
    """Malformed input: the server answers ``<tag> BAD <text>`` and the connection goes on.
    ``tag`` is ``*`` when no valid tag could be read. ``name`` is the command, if known."""

    tag: str
    text: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Bye:
    """Input the connection cannot recover from: send ``* BYE <text>`` and close."""

    text: str


@dataclass(frozen=True, slots=True)
class IdleDone:
    """``DONE`` ended the IDLE started with ``idle(tag)``."""

    tag: str


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line during AUTHENTICATE: base64 text as sent, ``cancelled`` for ``*``."""

    tag: str
    line: bytes

    @property
    def cancelled(self) -> bool:
        return self.line == b"*"

    def decode(self) -> bytes | None:
        """The decoded response, or None when it is not valid base64."""
        try:
            return binascii.a2b_base64(self.line, strict_mode=True) if self.line else b""
        except (binascii.Error, ValueError):
            return None


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
"""Nothing complete yet: feed more bytes with ``receive_data``."""
CLOSED = _Sentinel("CLOSED")
"""The client closed its side (``receive_data(b"")``) or a ``Bye`` was produced."""

Event = Command | LiteralStart | LiteralChunk | LiteralEnd | CommandEnd | Bad | Bye | \
    IdleDone | AuthResponse | _Sentinel
