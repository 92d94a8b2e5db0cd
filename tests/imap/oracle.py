"""Talk raw IMAP to the Dovecot oracle and to cote's parser with the same bytes, for
differential tests: which commands each calls BAD, and with which text."""

from __future__ import annotations

import re
import socket

from cote.mailproc.imap import (
    NEED_DATA,
    Bad,
    Bye,
    Command,
    Connection,
    IdleDone,
    LiteralStart,
)
from cote.mailproc.imap.commands import LOGIN_COMMANDS, MAIL_COMMANDS

_TIMING = re.compile(rb" \([0-9.]+ \+ [0-9.]+(?: \+ [0-9.]+)? secs\)\.\Z")
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


def strip_timing(line: bytes) -> bytes:
    return _TIMING.sub(b"", line.rstrip(b"\r\n"))


class RawImap:
    """A raw socket IMAP session: send bytes, collect lines up to a sentinel NOOP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.read_line()  # greeting
        self.counter = 0

    def read_line(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("oracle closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def exchange(self, data: bytes) -> list[bytes]:
        """Send ``data`` then a sentinel NOOP; the lines that came before the sentinel's OK."""
        self.counter += 1
        sentinel = b"zz%d" % self.counter
        self.sock.sendall(data + sentinel + b" NOOP\r\n")
        lines = []
        while True:
            try:
                line = self.read_line()
            except (ConnectionError, OSError):
                return lines
            if line.startswith(sentinel + b" "):
                return lines
            lines.append(line)

    def close(self) -> None:
        self.sock.close()


def logged_in_session(port: int, user: str = "user1", password: str = "pass1") -> RawImap:
    s = RawImap(port)
    out = s.exchange(b"l LOGIN %s %s\r\n" % (user.encode(), password.encode()))
    assert any(x.startswith(b"l OK") for x in out), out
    return s


def prepare_mailbox(s: RawImap, count: int = 4) -> None:
    """INBOX with ``count`` messages (topped up), selected."""
    out = s.exchange(b"s SELECT INBOX\r\n")
    have = next(int(x.split()[1]) for x in out if x.endswith(b"EXISTS\r\n"))
    for _ in range(max(0, count - have)):
        s.exchange(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    s.exchange(b"s SELECT INBOX\r\n")


def dovecot_reply(s: RawImap, tag: bytes, data: bytes) -> tuple[str, bytes]:
    """(status, text) of Dovecot's reply to ``data``: status OK/NO/BAD/BYE/TAGBAD."""
    lines = s.exchange(data)
    for line in lines:
        if line.startswith(tag + b" "):
            rest = strip_timing(line[len(tag) + 1:])
            status, _, text = rest.partition(b" ")
            return status.decode(), text
    for line in lines:
        if line.startswith(b"* BAD ") or line.startswith(b"* BYE "):
            rest = strip_timing(line[2:])
            status, _, text = rest.partition(b" ")
            return ("TAGBAD" if status == b"BAD" else "BYE"), text
    return "NONE", b"".join(lines)


def cote_reply(data: bytes, enabled: frozenset[str] = frozenset(), *,
               pre_login: bool = False) -> tuple[str, bytes]:
    """What cote's parser makes of ``data``: BAD/TAGBAD with its text, PARSED, or BYE."""
    conn = Connection(commands=LOGIN_COMMANDS if pre_login else MAIL_COMMANDS,
                      pre_login=pre_login)
    conn.enabled = enabled
    conn.receive_data(data)
    while True:
        event = conn.next_event()
        if isinstance(event, Bad):
            if event.tag == "*":
                return "TAGBAD", event.text.encode()
            return "BAD", event.text.encode()
        if isinstance(event, Bye):
            return "BYE", event.text.encode()
        if isinstance(event, IdleDone):
            return "PARSED", b"DONE"
        if isinstance(event, Command):
            if event.name == "IDLE":
                conn.idle(event.tag)
                continue
            if event.name == "APPEND":
                if event.args.mailbox.name != "INBOX":  # type: ignore[attr-defined]
                    # the handler answers NO [TRYCREATE] before looking further, as Dovecot
                    return "PARSED", b"APPEND to a missing mailbox"
                continue
            return "PARSED", repr(event.args).encode()
        if isinstance(event, LiteralStart):
            conn.accept_literal()
            continue
        if event is NEED_DATA:
            return "NEED_DATA", b""
        if type(event).__name__ == "CommandEnd":
            return "PARSED", b"APPEND"
