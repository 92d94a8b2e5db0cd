"""The sans-IO IMAP server connection: bytes in, events out, one output buffer.

Used by the login process (before authentication) and the IMAP mail process alike. The
adapter feeds whatever the socket gave with ``receive_data`` and takes events with
``next_event`` until ``NEED_DATA``; it sends ``data_to_send()``. Everything about framing
lives here: line ends, synchronising and non-synchronising literals (LITERAL+/LITERAL-),
APPEND messages streamed in chunks, the line length limit, IDLE and AUTHENTICATE modes and
the transport swaps of STARTTLS and COMPRESS.

The receive buffer keeps the position where it last looked for a line end, so a command
arriving one byte at a time costs O(n), not O(n²).
"""

from __future__ import annotations

import re

from . import events as ev
from .commands import (
    APPEND,
    ARG_LIMITS,
    COMMANDS,
    NO_ARG_COMMANDS,
    UID_COMMANDS,
    Append,
    Authenticate,
    make_mailbox,
    parse_append_message,
    parse_command,
)
from .response import Writer
from .tokens import (
    MAX_LITERAL_SIZE,
    TOKEN_ERRORS,
    Arg,
    Literal,
    LiteralMarker,
    Quoted,
    SyntaxErr,
    is_nil,
    tokenize,
)

DEFAULT_MAX_LINE_LENGTH = 65536
LOGIN_MAX_LINE_LENGTH = 8192
LOGIN_MAX_TOKEN = 1026
"""What Dovecot's imap-login buffers of one argument before ``* BYE Input buffer full``
(AUTHENTICATE's initial response may be longer)."""
TOO_LONG = "Too long argument"
TOO_LARGE = "IMAP command line too large"
LOGIN_BAD_TEXT = "Error in IMAP command received by server."
LOGIN_MAX_BAD_COMMANDS = 3
LITERAL_MINUS_MAX = 4096
CHUNK_SIZE = 256 * 1024

_TAG = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\+\]]+")  # ATOM-CHARs but "+"
_NAME = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')  # ATOM-CHARs
_AUTHENTICATE = re.compile(rb"[^ ]+ AUTHENTICATE ", re.IGNORECASE)
_LITERAL_END = re.compile(rb"(~?)\{([0-9]+)([+-]?)\}\r?\n\Z")
_QUOTED_BODY = re.compile(rb'(?:[^"\\\r\n]|\\[^\r\n])*"')

# states
_COMMAND = 0
_LITERAL_DECISION = 1
_LITERAL_DATA = 2
_APPEND_NEXT = 3
_IDLE = 4
_AUTH = 5
_SKIP_LINE = 6
_SKIP_DATA = 7
_CLOSED = 8


LOGIN_ID_BAD = "Invalid ID parameters"


def _login_id_valid(tokens: list[Arg]) -> bool:
    """imap-login's ID wants NIL or a list of string keys with string/NIL values."""
    if not tokens:
        return False
    params = tokens[0]
    if is_nil(params):
        return True
    if not isinstance(params, list):
        return False
    return all(isinstance(item, (Quoted, Literal)) or (i % 2 and is_nil(item))
               for i, item in enumerate(params))


def literal_at_end(fragment: bytes) -> tuple[int, bool, bool] | None:
    """``(size, synchronizing, binary)`` when a line fragment ends with a literal header that
    is a token of its own (not inside a quoted string, not glued to an atom)."""
    m = _LITERAL_END.search(fragment)
    if m is None:
        return None
    start = m.start()
    if start > 0 and fragment[start - 1] not in (0x20, 0x28):  # SP or "("
        return None
    pos = 0
    while True:
        q = fragment.find(b'"', pos, start)
        if q < 0:
            break
        qm = _QUOTED_BODY.match(fragment, q + 1)
        if qm is None or qm.end() > start:
            return None
        pos = qm.end()
    return int(m.group(2)), m.group(3) != b"+" and m.group(3) != b"-", m.group(1) == b"~"


class Connection:
    """One client's IMAP stream.

    ``commands`` is the set of command names this process accepts (the login process and the
    mail process differ); others are ``Unknown command``. ``literal_plus``/``literal_minus``
    select RFC 7888 behaviour for ``{n+}``.
    """

    def __init__(self, *, max_line_length: int | None = None,
                 commands: frozenset[str] | None = None, literal_plus: bool = True,
                 literal_minus: bool = False, pre_login: bool = False) -> None:
        self.pre_login = pre_login
        """Dovecot's imap-login dialect: generic BAD texts (token errors shown as they are),
        ``* BYE Too many invalid IMAP commands.`` at the third bad command, ``* BYE Input
        buffer full, aborting`` for an over-long line."""
        self.bad_commands = 0
        self.max_line_length = max_line_length or (LOGIN_MAX_LINE_LENGTH if pre_login
                                                   else DEFAULT_MAX_LINE_LENGTH)
        self.commands = commands if commands is not None else frozenset(COMMANDS) | {APPEND}
        self.literal_plus = literal_plus
        self.literal_minus = literal_minus
        self.enabled: frozenset[str] = frozenset()
        """Extensions the client ENABLEd (the server sets this; QRESYNC changes the grammar)."""
        self.writer = Writer()
        self._buf = bytearray()
        self._scan = 0          # where to look for the next LF
        self._frag = 0          # start of the current line fragment (after inline literals)
        self._state = _COMMAND
        self._tag = ""
        self._name = ""
        self._uid = False
        self._args_at = 0       # offset of the arguments in the buffered command
        self._remaining = 0     # literal octets still to come (stream or skip)
        self._pending: ev.LiteralStart | None = None
        self._eof = False
        self._queue: list[ev.Event] = []
        self._last_sp = -1      # the last SP of the command seen by _find_lf
        self._unknown: ev.Bad | None = None  # pre-login: reported once the line is read
        self._after_skip: ev.Event | None = None  # due once a skipped line has ended

    # -- input --------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means end of stream."""
        if not data:
            self._eof = True
        else:
            self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_event(self) -> ev.Event:
        """The next event, ``NEED_DATA`` when more input is needed, ``CLOSED`` at the end."""
        if self._queue:
            queued = self._queue.pop(0)
            if self.pre_login and isinstance(queued, ev.Bad):
                return self._login_bad(queued)
            return queued
        while True:
            state = self._state
            if state == _CLOSED:
                return ev.CLOSED
            if state == _COMMAND:
                result = self._read_command()
            elif state == _LITERAL_DATA:
                result = self._read_literal_data()
            elif state == _APPEND_NEXT:
                result = self._read_append_next()
            elif state in (_IDLE, _AUTH):
                result = self._read_mode_line()
            elif state == _SKIP_LINE:
                result = self._skip_line()
            elif state == _SKIP_DATA:
                result = self._skip_data()
            else:  # _LITERAL_DECISION
                raise RuntimeError("accept_literal() or reject_literal() must be called first")
            if result is None:
                continue
            if result is ev.NEED_DATA and self._eof:
                self._state = _CLOSED
                return ev.CLOSED
            if self.pre_login and isinstance(result, ev.Bad):
                return self._login_bad(result)
            return result

    def _login_bad(self, bad: ev.Bad) -> ev.Event:
        if bad.text.endswith((TOO_LONG, TOO_LARGE)):
            self._state = _CLOSED
            return ev.Bye("Input buffer full, aborting")
        self.bad_commands += 1
        if self.bad_commands >= LOGIN_MAX_BAD_COMMANDS:
            self._state = _CLOSED
            return ev.Bye("Too many invalid IMAP commands.")
        detail = bad.text.rpartition(": ")[2] if ": " in bad.text else bad.text
        text = detail if detail in TOKEN_ERRORS or detail == LOGIN_ID_BAD else LOGIN_BAD_TEXT
        return ev.Bad(bad.tag, text, bad.name)

    # -- server decisions -------------------------------------------------------------------
    def accept_literal(self) -> None:
        """Take the announced APPEND literal (``+ OK`` goes out if it is synchronizing)."""
        lit = self._take_pending()
        if lit.synchronizing:
            self.writer.write(b"+ OK\r\n")
        self._remaining = lit.size
        self._state = _LITERAL_DATA

    def reject_literal(self) -> None:
        """Refuse the announced literal; the server writes the tagged NO/BAD itself. A
        non-synchronizing literal's data (already on its way) is read and dropped."""
        lit = self._take_pending()
        if lit.synchronizing:
            self._state = _COMMAND
        else:
            self._remaining = lit.size
            self._state = _SKIP_DATA

    def _take_pending(self) -> ev.LiteralStart:
        if self._state != _LITERAL_DECISION or self._pending is None:
            raise RuntimeError("no literal is waiting for a decision")
        lit, self._pending = self._pending, None
        return lit

    def idle(self, tag: str) -> None:
        """Enter IDLE (after writing ``+ idling``): only ``DONE`` is read until it ends."""
        self._tag = tag
        self._state = _IDLE

    def authenticate(self, tag: str) -> None:
        """Enter AUTHENTICATE: each line is an ``AuthResponse`` until ``end_authenticate``."""
        self._tag = tag
        self._state = _AUTH

    def end_authenticate(self) -> None:
        if self._state == _AUTH:
            self._state = _COMMAND

    def start_tls(self) -> bytes:
        """After ``OK Begin TLS negotiation now``: the plaintext that was already buffered is
        discarded (a command injection attempt, RFC 3207 style) and returned for logging."""
        return self._take_buffer()

    def start_compress(self) -> bytes:
        """After ``OK`` to COMPRESS: bytes already buffered are compressed data; the adapter
        inflates them and feeds the result back with ``receive_data``."""
        return self._take_buffer()

    def _take_buffer(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = self._frag = 0
        self._last_sp = -1
        return data

    # -- output -----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def data_to_send(self) -> bytes:
        return self.writer.take()

    # -- command state ------------------------------------------------------------------------
    def _find_lf(self) -> int:
        """The next LF, searching only bytes not searched before; also remembers the last
        SP seen, so that a growing argument is measured without rescanning."""
        buf = self._buf
        i = buf.find(b"\n", self._scan)
        end = len(buf) if i < 0 else i
        sp = buf.rfind(b" ", self._scan, end)
        if sp >= 0:
            self._last_sp = sp
        if i < 0:
            self._scan = end
        return i

    def _bad(self, text: str) -> ev.Bad:
        if self._name:
            name = "UID " + self._name if self._uid else self._name
            return ev.Bad(self._tag or "*", f"Error in IMAP command {name}: {text}", name)
        return ev.Bad(self._tag or "*", f"Error in IMAP command: {text}")

    def _reset_command(self, consumed: int) -> None:
        del self._buf[:consumed]
        self._scan = self._frag = 0
        self._last_sp = -1
        self._tag = self._name = ""
        self._uid = False
        self._unknown = None

    def _head_window(self) -> int:
        """How far to look for ``tag SP name``: both are arguments, within its limit."""
        return min(400, self._token_limit() + 1)

    def _head_for_error(self) -> None:
        """Tag and name of the buffered command, for an error found before its end."""
        self._tag = self._name = ""
        self._uid = False
        self._parse_head(bytes(self._buf[:self._head_window()]), final=False)
        if not self._name:
            self._tag = ""

    def _token_limit(self) -> int:
        """The longest argument Dovecot buffers (its input buffer minus one); imap-login's
        is smaller but AUTHENTICATE's initial response is exempt."""
        if self.pre_login:
            if _AUTHENTICATE.match(self._buf):
                return self.max_line_length
            return LOGIN_MAX_TOKEN
        return self.max_line_length - 1

    def _last_token_start(self, end: int) -> int:
        """Where the command's last argument before ``end`` starts."""
        buf = self._buf
        while end > self._frag and buf[end - 1] == 0x20:
            end -= 1
        if end <= self._frag:  # nothing after the last literal: that literal was checked
            return 0
        return max(buf.rfind(b" ", 0, end) + 1, self._frag)

    def _longest_token(self, end: int) -> int:
        return max(len(t) for t in bytes(self._buf[self._frag:end]).rstrip(b"\r").split(b" "))

    def _too_long(self, whole_line: bool = False) -> ev.Event:
        # an argument or a line longer than allowed: answer now, drop the rest of the line
        self._head_for_error()
        bad = self._bad(TOO_LARGE if whole_line else TOO_LONG)
        del self._buf[:]
        self._scan = self._frag = 0
        self._last_sp = -1
        self._state = _SKIP_LINE
        self._tag = self._name = ""
        return bad

    def _parse_head(self, line: bytes, final: bool) -> ev.Bad | None:
        """Read ``tag SP name [SP]``; sets ``_tag``/``_name``/``_uid``/``_args_at``."""
        m = _TAG.match(line)
        if m is None or m.end() >= len(line) or line[m.end()] != 0x20:
            if m is not None and (m.end() < len(line) and line[m.end()] in (0x0D, 0x0A)):
                self._tag = m.group().decode("latin-1")
                return ev.Bad(self._tag, "Error in IMAP command: Invalid command name")
            if m is not None and m.end() == len(line) and not final:
                return None
            return ev.Bad("*", "Error in IMAP tag: Invalid tag")
        self._tag = m.group().decode("latin-1")
        invalid = ev.Bad(self._tag, "Error in IMAP command: Invalid command name")
        name, pos = self._read_name(line, m.end() + 1, final)
        if name is None:
            return invalid
        if name == "UID":
            if pos >= len(line) or line[pos] != 0x20:
                return invalid
            sub, pos = self._read_name(line, pos + 1, final)
            if sub is None:
                return invalid
            self._uid = True
            self._name = sub
            if sub not in UID_COMMANDS or sub not in self.commands:
                unknown = ev.Bad(self._tag, f"Error in IMAP command UID {sub}: Unknown command",
                                 f"UID {sub}")
                if not self.pre_login:
                    return unknown
                self._unknown = unknown
        else:
            self._name = name
            if name not in self.commands:
                unknown = ev.Bad(self._tag, f"Error in IMAP command {name}: Unknown command",
                                 name)
                if not self.pre_login:
                    return unknown
                # imap-login reads the whole line first: its syntax errors come first
                self._unknown = unknown
        self._args_at = pos
        return None

    @staticmethod
    def _read_name(line: bytes, pos: int, final: bool) -> tuple[str | None, int]:
        """A command name (ATOM-CHARs, upper-cased) that must end at SP or the line end
        (a name running to the end of a partial line is not known yet)."""
        n = _NAME.match(line, pos)
        if n is None or (n.end() < len(line) and line[n.end()] not in (0x20, 0x0D, 0x0A)) \
                or (n.end() == len(line) and not final):
            return None, pos
        return n.group().decode("latin-1").upper(), n.end()

    def _bad_and_skip_rest(self, bad: ev.Bad, lf: int) -> ev.Bad:
        """Report ``bad`` and drop the command up to and including the line end at ``lf``."""
        self._reset_command(lf + 1)
        self._state = _COMMAND
        return bad

    def _read_command(self) -> ev.Event | None:
        buf = self._buf
        while True:
            if self._frag > len(buf):  # inline literal data still incomplete
                return ev.NEED_DATA
            lf = self._find_lf()
            if lf < 0:
                # Dovecot's two limits: one argument must fit its input buffer, and no
                # argument may start after imap_max_line_length octets of the command
                too_large = self._last_sp + 1 > self.max_line_length
                if too_large or \
                        len(buf) - max(self._last_sp + 1, self._frag) > self._token_limit():
                    return self._overflow(too_large)
                return ev.NEED_DATA
            if self._frag == 0:
                self._tag = self._name = ""
                self._uid = False
                window = self._head_window()
                head_bad = self._parse_head(bytes(buf[:min(lf + 1, window)]), final=lf < window)
                if head_bad is None and not self._name:  # tag or name longer than allowed
                    head_bad = ev.Bad("*", f"Error in IMAP command: {TOO_LONG}")
                if head_bad is not None:
                    return self._bad_and_skip_rest(head_bad, lf)
                if self._name in NO_ARG_COMMANDS and not self._uid and not self.pre_login:
                    # Dovecot never reads these commands' arguments: the rest of the line
                    # is dropped unparsed, whatever its length, a literal announced included
                    tag, name = self._tag, self._name
                    self._reset_command(lf + 1)
                    return ev.Command(tag, name, parse_command(name, []), False)
            if lf - self._frag + 1 > self._token_limit() and self._longest_token(lf) > \
                    self._token_limit():
                self._head_for_error()
                return self._bad_and_skip_rest(self._bad(TOO_LONG), lf)
            content = lf - (1 if lf and buf[lf - 1] == 0x0D else 0)
            if content > self.max_line_length and \
                    self._last_token_start(content) > self.max_line_length:
                self._head_for_error()
                return self._bad_and_skip_rest(self._bad(TOO_LARGE), lf)
            fragment = bytes(buf[self._frag:lf + 1])
            lit = literal_at_end(fragment) if b"}" in fragment else None
            if lit is None:
                raw = bytes(buf[:lf + 1])
                return self._finish_command(raw, lf)
            size, sync, _binary = lit
            if size > MAX_LITERAL_SIZE:
                self._state = _CLOSED
                return ev.Bye("Literal size too large")
            if self._name == APPEND:
                streamed = self._append(lf, streaming=True)
                if streamed is not None:
                    return streamed
            if not sync and not self.literal_plus and \
                    (not self.literal_minus or size > LITERAL_MINUS_MAX):
                bad = self._bad("Non-synchronizing literal too large" if self.literal_minus
                                else "Non-synchronizing literals not supported")
                self._reset_command(lf + 1)
                self._remaining = size
                self._state = _SKIP_DATA
                return bad
            if content + size > self.max_line_length:  # "{n}" ends at content
                self._state = _CLOSED
                return ev.Bye("Literal size too large")
            if sync:
                self.writer.write(b"+ OK\r\n")
            self._frag = lf + 1 + size
            self._scan = self._frag
            self._last_sp = self._frag - 1
            if len(buf) < self._frag:
                return ev.NEED_DATA

    def _finish_command(self, raw: bytes, lf: int) -> ev.Event:
        tag, name, uid = self._tag, self._name, self._uid
        if self.pre_login and name != APPEND:
            return self._finish_login_command(raw, lf)
        if name == APPEND:
            result = self._append(lf, streaming=False)
            assert result is not None
            return result
        try:
            limit = ARG_LIMITS.get("UID " + name if uid else name, 0)
            tokens, _ = tokenize(raw, self._args_at, max_args=limit)
            args = parse_command(name, tokens, uid, self.enabled)
        except SyntaxErr as exc:
            bad = self._bad(str(exc))
            self._reset_command(lf + 1)
            return bad
        self._reset_command(lf + 1)
        return ev.Command(tag, name, args, uid)

    def _finish_login_command(self, raw: bytes, lf: int) -> ev.Event:
        """imap-login's order: the line's syntax, then the command name, then the arguments.
        AUTHENTICATE's mechanism is taken alone (an unknown one is a NO, whatever follows),
        ID reads one argument (any fault in it is "Invalid ID parameters"), ENABLE's
        arguments are read but not looked at."""
        tag, name, unknown = self._tag, self._name, self._unknown
        self._unknown = None
        event: ev.Event
        try:
            if name == "AUTHENTICATE" and unknown is None:
                event = self._login_authenticate(raw)
            elif name == "ID" and unknown is None:
                try:
                    tokens, _ = tokenize(raw, self._args_at, max_args=1)
                except SyntaxErr as exc:
                    if str(exc) != "Missing ')'":
                        raise
                    tokens = []
                event = ev.Command(tag, name, parse_command(name, tokens)) \
                    if _login_id_valid(tokens) else self._bad(LOGIN_ID_BAD)
            else:
                tokens, _ = tokenize(raw, self._args_at)
                if name == "ENABLE":  # read, then ignored before login
                    tokens = []
                if unknown is not None:
                    event = unknown
                elif name == "ID" and not _login_id_valid(tokens):
                    event = self._bad(LOGIN_ID_BAD)
                else:
                    event = ev.Command(tag, name, parse_command(name, tokens, False,
                                                                self.enabled))
        except SyntaxErr as exc:
            event = self._bad(str(exc))
        self._reset_command(lf + 1)
        return event

    def _login_authenticate(self, raw: bytes) -> ev.Event:
        words = raw[self._args_at:].strip(b" \r\n").split(b" ", 1)
        if not words[0]:
            return self._bad("Invalid arguments")
        mech = words[0].strip(b'"').decode("latin-1").upper()
        initial = words[1].strip(b" ") if len(words) > 1 else None
        return ev.Command(self._tag, "AUTHENTICATE", Authenticate(mech, initial or None))

    # -- APPEND -------------------------------------------------------------------------------
    def _append(self, lf: int, *, streaming: bool) -> ev.Event | None:
        """An APPEND up to the line end at ``lf``: ``Command`` as soon as the mailbox is known
        (Dovecot opens it before reading further, so a missing one is a NO even when the
        rest is malformed), then ``LiteralStart`` for a message literal ending the line, or
        ``Bad``. None when the literal at the line end is to be read inline instead (the
        mailbox name itself, or a literal inside a list)."""
        raw = bytes(self._buf[:lf + 1])
        try:
            head, after = tokenize(raw, self._args_at, max_args=1,
                                   stream_last_literal=streaming)
        except SyntaxErr as exc:
            return self._bad_and_skip_rest(self._bad(str(exc)), lf)
        if not head:
            return self._bad_and_skip_rest(self._bad("Missing arguments"), lf)
        box = head[0]
        if isinstance(box, LiteralMarker):
            return None
        if not isinstance(box, bytes):
            return self._bad_and_skip_rest(self._bad("Invalid arguments"), lf)
        error: str | None
        try:
            rest, _ = tokenize(raw, after, stream_last_literal=streaming)
        except SyntaxErr as exc:
            if streaming and str(exc) == "Missing literal data":
                return None
            rest, error = [], str(exc)
        else:
            error = self._append_error(rest, streaming)
        command = ev.Command(self._tag, APPEND, Append(make_mailbox(bytes(box))))
        if error is not None:
            self._queue.append(self._bad(error))
            self._reset_command(lf + 1)
            self._state = _COMMAND
            return command
        marker = rest[-1]
        assert isinstance(marker, LiteralMarker)
        flags, when = parse_append_message(rest[:-1])
        del self._buf[:lf + 1]
        self._scan = self._frag = 0
        self._last_sp = -1
        self._pending = ev.LiteralStart(marker.size, marker.synchronizing, marker.binary,
                                        flags, when)
        self._state = _LITERAL_DECISION
        self._queue.append(self._pending)
        return command

    @staticmethod
    def _append_error(rest: list[Arg], streaming: bool) -> str | None:
        """What is wrong with the arguments after APPEND's mailbox, or None."""
        if not streaming or not rest or not isinstance(rest[-1], LiteralMarker):
            if not rest:
                return "Missing message size"
            if isinstance(rest[0], list):
                try:
                    parse_append_message(rest[:1])
                except SyntaxErr as exc:
                    return str(exc)
            return "Invalid arguments"
        try:
            parse_append_message(rest[:-1])
        except SyntaxErr as exc:
            return str(exc)
        return None

    def _read_literal_data(self) -> ev.Event | None:
        if self._remaining == 0:
            self._state = _APPEND_NEXT
            return ev.LiteralEnd()
        if not self._buf:
            return ev.NEED_DATA
        n = min(self._remaining, len(self._buf), CHUNK_SIZE)
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._remaining -= n
        return ev.LiteralChunk(chunk)

    def _read_append_next(self) -> ev.Event | None:
        lf = self._find_lf()
        if lf < 0:
            if len(self._buf) > self.max_line_length:
                return self._too_long()
            return ev.NEED_DATA
        fragment = bytes(self._buf[:lf + 1])
        tag = self._tag
        lit = literal_at_end(fragment) if b"}" in fragment else None
        try:
            if lit is None:
                tokens, _ = tokenize(fragment)
                if tokens:
                    raise SyntaxErr("Invalid arguments")
                self._reset_command(lf + 1)
                self._state = _COMMAND
                return ev.CommandEnd(tag)
            tokens, _ = tokenize(fragment, stream_last_literal=True)
            if not tokens or not isinstance(tokens[-1], LiteralMarker):
                raise SyntaxErr("Invalid arguments")
            marker = tokens[-1]
            if marker.size > MAX_LITERAL_SIZE:
                self._state = _CLOSED
                return ev.Bye("Literal size too large")
            flags, when = parse_append_message(tokens[:-1])
        except SyntaxErr as exc:
            self._state = _COMMAND
            return self._bad_and_skip_rest(self._bad(str(exc)), lf)
        del self._buf[:lf + 1]
        self._scan = 0
        self._last_sp = -1
        self._pending = ev.LiteralStart(marker.size, marker.synchronizing, marker.binary,
                                        flags, when)
        self._state = _LITERAL_DECISION
        return self._pending

    # -- IDLE / AUTHENTICATE ------------------------------------------------------------------
    def _read_mode_line(self) -> ev.Event | None:
        lf = self._find_lf()
        if lf < 0:
            if len(self._buf) > self.max_line_length:
                tag = self._tag
                self._buf.clear()
                self._scan = 0
                self._last_sp = -1
                mode_idle = self._state == _IDLE
                self._state = _SKIP_LINE
                return ev.Bad(tag, "Expected DONE" if mode_idle else "Response too long")
            return ev.NEED_DATA
        line = bytes(self._buf[:lf])
        del self._buf[:lf + 1]
        self._scan = 0
        self._last_sp = -1
        if lf + 1 > self.max_line_length:  # as if it had been caught before its end
            mode_idle = self._state == _IDLE
            self._state = _COMMAND
            return ev.Bad(self._tag, "Expected DONE" if mode_idle else "Response too long")
        if line.endswith(b"\r"):
            line = line[:-1]
        tag = self._tag
        if self._state == _IDLE:
            self._state = _COMMAND
            if line.upper() == b"DONE":
                return ev.IdleDone(tag)
            return ev.Bad(tag, "Expected DONE")
        return ev.AuthResponse(tag, line)

    # -- discarding -----------------------------------------------------------------------------
    def _skip_line(self) -> ev.Event | None:
        lf = self._buf.find(b"\n")
        if lf < 0:
            self._buf.clear()
            self._scan = 0
            self._last_sp = -1
            return ev.NEED_DATA
        # like Dovecot, literal data announced at the end of a dropped line is not skipped
        del self._buf[:lf + 1]
        self._scan = self._frag = 0
        self._last_sp = -1
        self._state = _COMMAND
        after, self._after_skip = self._after_skip, None
        return after

    def _overflow(self, too_large: bool) -> ev.Event | None:
        """A partial command went over a limit: the same answer as if its line had ended
        (a bad tag or name first; a no-argument command's rest is ignored)."""
        if self._frag == 0:
            self._tag = self._name = ""
            self._uid = False
            head_bad = self._parse_head(bytes(self._buf[:self._head_window()]), final=False)
            if head_bad is not None:
                self._buf.clear()
                self._scan = 0
                self._last_sp = -1
                self._state = _SKIP_LINE
                self._tag = self._name = ""
                return head_bad
            if self._name in NO_ARG_COMMANDS and not self._uid and not self.pre_login:
                return self._skip_arguments()
        return self._too_long(whole_line=too_large and self._longest_token(
            len(self._buf)) <= self._token_limit())

    def _skip_arguments(self) -> ev.Event | None:
        """Drop a no-argument command's over-long rest of line; the command follows."""
        self._after_skip = ev.Command(self._tag, self._name, parse_command(self._name, []))
        self._buf.clear()
        self._scan = self._frag = 0
        self._last_sp = -1
        self._tag = self._name = ""
        self._state = _SKIP_LINE
        return None

    def _skip_data(self) -> ev.Event | None:
        n = min(self._remaining, len(self._buf))
        del self._buf[:n]
        self._remaining -= n
        if self._remaining:
            return ev.NEED_DATA
        self._state = _SKIP_LINE
        self._scan = 0
        self._last_sp = -1
        return None


__all__ = ["Connection", "literal_at_end"]
