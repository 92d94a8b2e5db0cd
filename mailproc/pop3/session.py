"""The POP3 TRANSACTION state (RFC 1939 §5) as a sans-IO state machine.

The session sees the maildrop as it was at login: a list of virtual (CRLF) sizes and UIDLs.
It answers commands with reply bytes, asks the I/O layer to stream a message
(:class:`SendMessage`) and, on QUIT, hands over the deletions to commit (:class:`Update`)
before it says goodbye: the reply depends on whether the commit worked, and a client that
disconnects without QUIT never reaches UPDATE, so nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from cote.mailproc.pop3 import wire

UINT_MAX = 2**32 - 1
MAX_BAD_COMMANDS = 20


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Stream message ``index`` (0-based) after ``status``; ``body_lines`` limits TOP."""

    index: int
    status: bytes
    body_lines: int | None
    retr: bool


@dataclass(frozen=True, slots=True)
class Update:
    """QUIT: delete these messages (0-based), then call :meth:`Pop3Session.finish_update`."""

    deleted: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Send ``data`` and close: a UIDL could not be computed (``error``, if any, is logged) or
    too many bad commands."""

    data: bytes
    error: str
    reason: str = "POP3 UIDLs couldn't be listed"


@dataclass(frozen=True, slots=True)
class ClearSeen:
    """RSET with ``pop3_enable_last`` (RFC 1460): take \\Seen off every message now, committed
    whether or not QUIT follows (as Dovecot), then send ``data``."""

    data: bytes


Action = Reply | SendMessage | Update | Disconnect | ClearSeen


class UidlError(Exception):
    """A message's UIDL cannot be computed (e.g. ``%m`` where the storage has no header MD5);
    ``str(e)`` is the log line. Dovecot disconnects the client."""


class ArgError(Exception):
    """A bad command argument; the message is the -ERR text."""


@dataclass
class Stats:
    """Counters for ``pop3_logout_format`` (%t %p %r %b %d %m %s ...)."""

    top_count: int = 0
    top_bytes: int = 0
    retr_count: int = 0
    retr_bytes: int = 0
    deleted_count: int = 0
    deleted_bytes: int = 0
    expunged: int = 0


@dataclass
class Pop3Session:
    sizes: Sequence[int]
    #: the UIDLs, or a function computing one (0-based index) when asked: UIDLs that need
    #: the message (X-UIDL) or may fail are only computed for the UIDL command, as Dovecot
    uidls: Sequence[str] | Callable[[int], str]
    enable_last: bool = False
    deleted: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)  # RETRed since login or RSET, for \\Seen
    #: LAST (Dovecot): the highest 1-based message number with \\Seen at login, then of RETR
    last_accessed: int = 0
    stats: Stats = field(default_factory=Stats)
    quitting: bool = False
    bad_commands: int = 0  # failed commands in a row
    lowest_retr: int = 0  # lowest 1-based message number RETRieved
    #: every UIDL at once for the UIDL listing when a callable ``uidls`` can give them
    #: without failing (None from it: one by one)
    uidl_list: Callable[[], Sequence[str] | None] | None = None

    def __post_init__(self) -> None:
        if not callable(self.uidls) and len(self.sizes) != len(self.uidls):
            raise ValueError("sizes and uidls differ in length")
        self.total_size = sum(self.sizes)

    # -- commands ----------------------------------------------------------------------
    def handle(self, cmd: wire.Command) -> Action:
        """One command's answer; more than 20 failed commands in a row end the session
        (Dovecot's CLIENT_MAX_BAD_COMMANDS)."""
        action = self._dispatch(cmd)
        if isinstance(action, Reply) and action.data.startswith(b"-ERR"):
            self.bad_commands += 1
            if self.bad_commands > MAX_BAD_COMMANDS:
                self.quitting = True
                return Disconnect(action.data + wire.err("Too many bad commands."), "",
                                  "Too many bad commands.")
        elif not isinstance(action, Disconnect):
            self.bad_commands = 0
        return action

    def _dispatch(self, cmd: wire.Command) -> Action:
        handler = self._handlers.get(cmd.verb)
        if handler is None or (cmd.verb == "LAST" and not self.enable_last):
            # Dovecot echoes the name upper-cased, ASCII letters only
            upper = cmd.name.encode("utf-8", "surrogateescape").upper()
            text = f"Unknown command: {upper.decode('utf-8', 'surrogateescape')}" \
                if cmd.name else "Unknown command."
            return Reply(wire.err(text))
        try:
            return handler(self, cmd.args)
        except ArgError as e:
            return Reply(wire.err(str(e)))

    def capabilities(self) -> list[str]:
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
        return caps

    def _capa(self, args: str) -> Action:
        return Reply(wire.multiline(wire.ok(), self.capabilities()))

    def _noop(self, args: str) -> Action:
        return Reply(wire.ok())

    def _stat(self, args: str) -> Action:
        count, size = self._visible_totals()
        return Reply(wire.ok(f"{count} {size}"))

    def _list(self, args: str) -> Action:
        if not args:
            count, _ = self._visible_totals()
            lines = [f"{i + 1} {s}" for i, s in enumerate(self.sizes) if i not in self.deleted]
            return Reply(wire.multiline(wire.ok(f"{count} messages:"), lines))
        index = self._single_message(args)
        return Reply(wire.ok(f"{index + 1} {self.sizes[index]}"))

    def _uidl(self, args: str) -> Action:
        if not args:
            uidls = self.uidls
            every = uidls if not callable(uidls) else \
                self.uidl_list() if self.uidl_list is not None else None
            if every is not None:
                deleted = self.deleted
                return Reply(wire.multiline(wire.ok(), [
                    f"{i + 1} {uidl}" for i, uidl in enumerate(every) if i not in deleted]))
            lines = []
            for i in range(len(self.sizes)):
                if i in self.deleted:
                    continue
                try:
                    lines.append(f"{i + 1} {self._uidl_of(i)}")
                except UidlError as e:  # Dovecot: the lines sent so far, then it hangs up
                    self.quitting = True
                    partial = "".join(f"{line}\r\n" for line in lines)
                    return Disconnect(wire.ok() + wire.dot_stuff_lines(
                        partial.encode("utf-8", "surrogateescape")), str(e))
            return Reply(wire.multiline(wire.ok(), lines))
        index = self._single_message(args)
        try:
            return Reply(wire.ok(f"{index + 1} {self._uidl_of(index)}"))
        except UidlError as e:
            self.quitting = True
            return Disconnect(b"", str(e))

    def _uidl_of(self, index: int) -> str:
        uidls = self.uidls
        return uidls(index) if callable(uidls) else uidls[index]

    def _retr(self, args: str) -> Action:
        index = self._single_message(args)
        if self.lowest_retr == 0 or index + 1 < self.lowest_retr:
            self.lowest_retr = index + 1  # for the logout's uidl_change
        self.last_accessed = max(self.last_accessed, index + 1)
        status = wire.ok(f"{self.sizes[index]} octets")
        return SendMessage(index, status, None, retr=True)

    def _top(self, args: str) -> Action:
        number, rest = self._message_arg(args)
        if not rest.startswith(" "):
            raise ArgError(f"Noise after message number: {rest}")
        count = rest.lstrip(" ")
        if not count.isascii() or not count.isdigit():
            raise ArgError(f"Invalid size: {count}")
        lines = int(count)
        if lines > UINT_MAX:
            raise ArgError(f"Invalid size: {count}")
        index = self._live_index(number)
        return SendMessage(index, wire.ok(), lines, retr=False)

    def _dele(self, args: str) -> Action:
        index = self._single_message(args)
        self.deleted.add(index)
        return Reply(wire.ok("Marked to be deleted."))

    def _rset(self, args: str) -> Action:
        self.deleted.clear()
        self.seen.clear()  # as Dovecot: a RETR before RSET leaves no \Seen at QUIT
        self.last_accessed = 0
        return ClearSeen(wire.ok()) if self.enable_last else Reply(wire.ok())

    def _last(self, args: str) -> Action:
        return Reply(wire.ok(str(self.last_accessed)))

    def _quit(self, args: str) -> Action:
        self.quitting = True
        return Update(tuple(sorted(self.deleted)))

    _handlers: ClassVar[dict[str, Callable[[Pop3Session, str], Action]]] = {
        "CAPA": _capa, "NOOP": _noop, "STAT": _stat, "LIST": _list, "UIDL": _uidl,
        "RETR": _retr, "TOP": _top, "DELE": _dele, "RSET": _rset, "LAST": _last,
        "QUIT": _quit,
    }

    # -- after the I/O layer acted -----------------------------------------------------
    def message_sent(self, action: SendMessage, sent_bytes: int) -> None:
        """Account a streamed RETR/TOP (``sent_bytes`` includes the status line)."""
        if action.retr:
            self.stats.retr_count += 1
            self.stats.retr_bytes += sent_bytes
        else:
            self.stats.top_count += 1
            self.stats.top_bytes += sent_bytes
        if action.retr:  # (Dovecot's TOP never sets \Seen, even of a whole message)
            self.seen.add(action.index)

    def finish_update(self, ok: bool, expunged: int | None = None) -> bytes:
        """The QUIT reply once the deletions were committed (or failed)."""
        if not ok:
            return wire.err("Failed to delete messages.", "SYS/TEMP")
        self.stats.deleted_count = len(self.deleted)
        self.stats.deleted_bytes = sum(self.sizes[i] for i in self.deleted)
        self.stats.expunged = len(self.deleted) if expunged is None else expunged
        if self.deleted:
            return wire.ok("Logging out, messages deleted.")
        return wire.ok("Logging out.")

    # -- helpers -------------------------------------------------------------------------
    def _visible_totals(self) -> tuple[int, int]:
        if not self.deleted:
            return len(self.sizes), self.total_size
        size = self.total_size - sum(self.sizes[i] for i in self.deleted)
        return len(self.sizes) - len(self.deleted), size

    def _message_arg(self, args: str) -> tuple[int, str]:
        """Parse a message number's syntax as Dovecot does: (1-based number, rest of args)."""
        digits = 0
        while digits < len(args) and "0" <= args[digits] <= "9":
            digits += 1
        if digits == 0:
            raise ArgError(f"Invalid message number: {args}")
        rest = args[digits:]
        number = int(args[:digits])
        if number >= 2**64:  # not even a 64-bit number: Dovecot echoes the whole argument
            raise ArgError(f"Message number too large: {args}")
        if number > UINT_MAX:
            raise ArgError(f"Message number too large: {rest}")
        if rest and not rest.startswith(" "):
            raise ArgError(f"Noise after message number: {rest}")
        return number, rest

    def _single_message(self, args: str) -> int:
        """A command whose only argument is a message number that must not be deleted."""
        number, rest = self._message_arg(args)
        if rest:
            raise ArgError(f"Noise after message number: {rest}")
        return self._live_index(number)

    def _live_index(self, number: int) -> int:
        """Checked after the syntax: the message exists and is not marked deleted."""
        if number == 0 or number > len(self.sizes):
            raise ArgError(f"There's no message {number}.")
        if number - 1 in self.deleted:
            raise ArgError("Message is deleted.")
        return number - 1
