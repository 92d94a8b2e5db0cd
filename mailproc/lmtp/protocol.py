"""The LMTP server dialogue (RFC 2033, with RFC 3030 CHUNKING) as a sans-IO state machine.

Bytes in, events and reply bytes out. Clients pipeline (MAIL, RCPT…, DATA in one packet), but
each RCPT needs a userdb lookup and the end of data needs a delivery per recipient, so the
machine *pauses* at those events: it returns them and reads no further input until the I/O
layer answers (:meth:`LmtpProtocol.recipient_checked`, :meth:`LmtpProtocol.delivered`), which
resumes processing of what is buffered. Message data is handed out in chunks as it arrives,
dot-unstuffed, so a large message is streamed to disk and never held whole. Reply texts are
Dovecot 2.3's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from cote.mailproc.lmtp.paths import Address, PathError, parse_params, parse_path

MAX_LINE = 4096  # RFC 5321 allows 512 for commands; Dovecot is lenient, we bound memory.
_BDAT_ARGS = re.compile(r"^([0-9]+)(?: (.*))?$")


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes


@dataclass(frozen=True, slots=True)
class MailFrom:
    """A new transaction: the reverse path (None for ``<>``) and its parameters."""

    sender: Address | None
    params: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class CheckRecipient:
    """Look the recipient up (userdb, quota); answer with ``recipient_checked``."""

    address: Address
    params: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class DataChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd:
    """All data received; deliver to each accepted recipient, answer with ``delivered``."""

    recipients: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class Reset:
    """The transaction was abandoned (RSET, LHLO): what its recipients hold may be let go."""


@dataclass(frozen=True, slots=True)
class Close:
    pass


Event = Reply | MailFrom | CheckRecipient | DataChunk | DataEnd | Reset | Close


class Phase(Enum):
    COMMANDS = "commands"
    DATA = "data"  # reading dot-terminated DATA
    BDAT = "bdat"  # reading a counted chunk
    WAIT_RCPT = "wait-rcpt"
    WAIT_DELIVERY = "wait-delivery"
    CLOSED = "closed"


@dataclass
class Transaction:
    sender: Address | None
    number: int  # the how-many-th MAIL of the session (Dovecot's "T<n>")
    recipients: list[Address] = field(default_factory=list)
    rcpt_numbers: list[int] = field(default_factory=list)  # each accepted RCPT's position
    rcpt_commands: int = 0
    bdat_started: bool = False


def reply(code: int, enhanced: str | None, text: str) -> bytes:
    sep = f" {enhanced} " if enhanced else " "
    return f"{code}{sep}{text}\r\n".encode("utf-8", "surrogateescape")


def reply_lines(code: int, lines: Sequence[str]) -> bytes:
    out = [f"{code}-{line}\r\n" for line in lines[:-1]]
    out.append(f"{code} {lines[-1]}\r\n")
    return "".join(out).encode()


class LmtpProtocol:
    def __init__(self, hostname: str, greeting: str,
                 capabilities: Iterable[str] = ("8BITMIME", "CHUNKING",
                                                "ENHANCEDSTATUSCODES", "PIPELINING")) -> None:
        self.hostname = hostname
        self.greeting_text = greeting
        self.capabilities = list(capabilities)
        self.client_name: str | None = None
        self.phase = Phase.COMMANDS
        self.transaction: Transaction | None = None
        self.transactions = 0
        self._buf = bytearray()
        self._scanned = 0
        self._bdat_left = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_refused = False
        self._pending: CheckRecipient | None = None
        self._at_line_start = True  # DATA: the next byte begins a line

    def greeting(self) -> bytes:
        return reply(220, None, f"{self.hostname} {self.greeting_text}")

    # -- input -------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        self._buf += data
        return self._process()

    def _process(self) -> list[Event]:
        events: list[Event] = []
        while self.phase not in (Phase.WAIT_RCPT, Phase.WAIT_DELIVERY, Phase.CLOSED):
            if self.phase is Phase.DATA:
                if not self._read_data(events):
                    break
            elif self.phase is Phase.BDAT:
                if not self._read_bdat(events):
                    break
            else:
                line = self._next_line()
                if line is None:
                    if len(self._buf) > MAX_LINE:
                        events.append(Reply(reply(500, "5.5.2", "Line too long")))
                        events.append(Close())
                        self.phase = Phase.CLOSED
                    break
                events.extend(self._command(line))
        return events

    def _next_line(self) -> bytes | None:
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        return line[:-1] if line.endswith(b"\r") else line

    # -- commands ------------------------------------------------------------------------
    def _command(self, raw: bytes) -> list[Event]:
        line = raw.decode("utf-8", "surrogateescape")
        name, sep, args = line.partition(" ")
        verb = name.upper()
        if "\t" in name and verb.split("\t", 1)[0] in self._KNOWN:
            return [Reply(reply(500, "5.5.2", "Invalid command syntax"))]
        handler = self._handlers.get(verb)
        if handler is None:
            if verb in ("AUTH", "BURL"):
                return [Reply(reply(502, "5.5.1", "Unsupported command"))]
            if verb == "STARTTLS":
                return [Reply(reply(502, "5.5.1", "TLS support is not enabled."))]
            if verb == "XCLIENT" and self.transaction is not None:
                text = "XCLIENT not permitted during a mail transaction"
                return [Reply(reply(503, "5.5.0", text))]
            return [Reply(reply(500, "5.5.1", "Unknown command"))]
        return handler(self, args if sep else None)

    def _lhlo(self, args: str | None) -> list[Event]:
        if not args:
            return [Reply(b"501 Missing hostname\r\n")]
        self.client_name = args.split(" ", 1)[0]
        dropped: list[Event] = [Reset()] if self.transaction is not None else []
        self.transaction = None
        return [*dropped, Reply(reply_lines(250, [self.hostname, *self.capabilities]))]

    def _mail(self, args: str | None) -> list[Event]:
        if self.transaction is not None:
            return [Reply(reply(503, "5.5.0", "MAIL already given"))]
        if args is None or args[:5].upper() != "FROM:":
            return [Reply(reply(501, "5.5.4", "Invalid parameters"))]
        try:
            sender, rest = parse_path(args[5:], allow_null=True, allow_empty_domain=True)
        except PathError as e:
            return [Reply(reply(501, "5.5.4", f"Invalid FROM: {e}"))]
        try:
            params = parse_params(rest)
        except PathError as e:
            return [Reply(reply(501, "5.5.4", f"Invalid MAIL parameter: {e}"))]
        for key, value in params:
            if key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    return [Reply(reply(555, "5.5.4", "Unsupported mail BODY type"))]
            elif key not in self._mail_params():
                return [Reply(reply(555, "5.5.4", "Unsupported parameters"))]
        self.transactions += 1
        self.transaction = Transaction(sender, number=self.transactions)
        return [MailFrom(sender, tuple(params)), Reply(reply(250, "2.1.0", "OK"))]

    def _mail_params(self) -> set[str]:
        return {cap.split(" ", 1)[0] for cap in self.capabilities} & {"SIZE", "SMTPUTF8"}

    def _rcpt(self, args: str | None) -> list[Event]:
        if args is None or args[:3].upper() != "TO:":
            return [Reply(reply(501, "5.5.4", "Invalid parameters"))]
        if self.transaction is None:
            return [Reply(reply(503, "5.5.0", "MAIL needed first"))]
        try:
            address, rest = parse_path(args[3:], allow_null=False)
        except PathError as e:
            return [Reply(reply(501, "5.5.4", f"Invalid TO: {e}"))]
        try:
            params = parse_params(rest)
        except PathError as e:
            return [Reply(reply(501, "5.5.4", f"Invalid RCPT parameter: {e}"))]
        for key, _ in params:
            if key != "ORCPT":
                return [Reply(reply(555, "5.5.4", "Unsupported parameters"))]
        assert address is not None
        self.transaction.rcpt_commands += 1
        self._pending = CheckRecipient(address, tuple(params))
        self.phase = Phase.WAIT_RCPT
        return [self._pending]

    def _data(self, args: str | None) -> list[Event]:
        if args is not None:
            return [Reply(reply(501, "5.5.4", "Invalid parameters"))]
        problem = self._data_problem()
        if problem:
            return [Reply(problem)]
        self.phase = Phase.DATA
        self._at_line_start = True
        return [Reply(b"354 OK\r\n")]

    def _data_problem(self) -> bytes | None:
        if self.transaction is None:
            return reply(503, "5.5.0", "MAIL needed first")
        if not self.transaction.recipients:
            return reply(503, "5.5.0", "No valid recipients")
        return None

    def _bdat(self, args: str | None) -> list[Event]:
        match = _BDAT_ARGS.match(args or "")
        if not match:
            return [Reply(reply(501, "5.5.4", "Invalid chunk size parameter"))]
        size = int(match.group(1))
        marker = match.group(2)
        problem = self._data_problem()
        if marker is not None and marker.upper() != "LAST":
            problem = reply(501, "5.5.4", "Invalid end marker parameter")
        if problem:
            # RFC 3030: a refused chunk's bytes still follow and are skipped.
            self._bdat_left, self._bdat_last, self.phase = size, False, Phase.BDAT
            self._bdat_refused = True
            return [Reply(problem)]
        assert self.transaction is not None
        self.transaction.bdat_started = True
        self._bdat_left, self._bdat_size, self._bdat_last = size, size, marker is not None
        self._bdat_refused = False
        self.phase = Phase.BDAT
        return []

    def _rset(self, args: str | None) -> list[Event]:
        if args is not None:
            return [Reply(reply(501, "5.5.4", "Invalid parameters"))]
        dropped: list[Event] = [Reset()] if self.transaction is not None else []
        self.transaction = None
        return [*dropped, Reply(reply(250, "2.0.0", "OK"))]

    def _noop(self, args: str | None) -> list[Event]:
        return [Reply(reply(250, "2.0.0", "OK"))]

    def _vrfy(self, args: str | None) -> list[Event]:
        return [Reply(reply(252, "2.3.3", "Try RCPT instead"))]

    def _quit(self, args: str | None) -> list[Event]:
        if args is not None:
            return [Reply(reply(501, "5.5.4", "Invalid parameters"))]
        self.phase = Phase.CLOSED
        return [Reply(reply(221, "2.0.0", "Bye")), Close()]

    _handlers: ClassVar[dict[str, Callable[[LmtpProtocol, str | None], list[Event]]]] = {
        "LHLO": _lhlo, "MAIL": _mail, "RCPT": _rcpt, "DATA": _data, "BDAT": _bdat,
        "RSET": _rset, "NOOP": _noop, "VRFY": _vrfy, "QUIT": _quit,
    }
    _KNOWN: ClassVar[frozenset[str]] = frozenset(_handlers)

    # -- message data ------------------------------------------------------------------------
    def _read_data(self, events: list[Event]) -> bool:
        """Dot-unstuff and hand out data up to the terminating ``.`` line. Only lines that
        begin with a dot need a look, so the scan jumps from one ``\\n.`` to the next."""
        buf = self._buf
        out = bytearray()
        pos = 0
        while True:
            if self._at_line_start:
                if len(buf) - pos < 3 and bytes(buf[pos:]) in (b"", b".", b".\r"):
                    break  # cannot tell yet whether this is the terminator
                if buf.startswith(b".\r\n", pos) or buf.startswith(b".\n", pos):
                    pos += 3 if buf[pos + 1] == 0x0D else 2
                    del buf[:pos]
                    if out:
                        events.append(DataChunk(bytes(out)))
                    self._end_of_data(events)
                    return True
                if buf[pos] == 0x2E:  # a stuffed dot
                    pos += 1
                self._at_line_start = False
            dot = buf.find(b"\n.", pos)
            if dot < 0:
                out += buf[pos:]
                self._at_line_start = buf.endswith(b"\n")
                pos = len(buf)
                break
            out += buf[pos : dot + 1]
            pos = dot + 1
            self._at_line_start = True
        del buf[:pos]
        if out:
            events.append(DataChunk(bytes(out)))
        return False

    def _read_bdat(self, events: list[Event]) -> bool:
        take = min(self._bdat_left, len(self._buf))
        if take:
            if not self._bdat_refused:
                events.append(DataChunk(bytes(self._buf[:take])))
            del self._buf[:take]
            self._bdat_left -= take
        if self._bdat_left:
            return False
        self.phase = Phase.COMMANDS
        if self._bdat_refused:
            return True  # a refused chunk was skipped; its error was already sent
        if self._bdat_last:
            self._end_of_data(events)
        else:
            events.append(Reply(reply(250, "2.0.0", f"Added {self._bdat_size} octets")))
        return True

    def _end_of_data(self, events: list[Event]) -> None:
        assert self.transaction is not None
        self.phase = Phase.WAIT_DELIVERY
        events.append(DataEnd(tuple(self.transaction.recipients)))

    # -- answers from the I/O layer ----------------------------------------------------------
    def recipient_checked(self, accepted: bool, failure: bytes | None = None) -> list[Event]:
        """Answer to CheckRecipient: accept, or refuse with ``failure`` (a full reply line)."""
        pending, self._pending = self._pending, None
        assert pending is not None and self.transaction is not None
        self.phase = Phase.COMMANDS
        if accepted:
            self.transaction.recipients.append(pending.address)
            self.transaction.rcpt_numbers.append(self.transaction.rcpt_commands)
            first: Event = Reply(reply(250, "2.1.5", "OK"))
        else:
            first = Reply(failure or reply(550, "5.1.1", f"<{pending.address}> User doesn't "
                                                         f"exist: {pending.address}"))
        return [first, *self._process()]

    def delivery_id(self, session_id: str, index: int) -> str:
        """Dovecot's id of the delivery to accepted recipient ``index``: the session id, plus
        ``:T<n>`` from the session's second transaction on, plus ``:R<m>`` when its RCPT was
        not the transaction's first (m is the RCPT's position)."""
        assert self.transaction is not None
        t = self.transaction
        position = t.rcpt_numbers[index]
        tx = f":T{t.number}" if t.number > 1 else ""
        rcpt = f":R{position}" if position > 1 else ""
        return f"{session_id}{tx}{rcpt}"

    def transaction_trace_id(self, session_id: str) -> str:
        """The id of the whole transaction (its Received header when it has several
        recipients): the session id, plus ``:T<n>`` from the second transaction on."""
        assert self.transaction is not None
        n = self.transaction.number
        return f"{session_id}:T{n}" if n > 1 else session_id

    def delivered(self, results: Sequence[bytes]) -> list[Event]:
        """Answer to DataEnd: one full reply line per recipient, in RCPT order (RFC 2033)."""
        assert self.transaction is not None
        if len(results) != len(self.transaction.recipients):
            raise ValueError("one delivery result per accepted recipient is required")
        self.transaction = None
        self.phase = Phase.COMMANDS
        return [*(Reply(r) for r in results), *self._process()]


def saved_reply(address: Address, delivery_id: str) -> bytes:
    return reply(250, "2.0.0", f"<{address}> {delivery_id} Saved")
