"""Minimal asyncio clients for IMAP, POP3, LMTP and the auth-client socket (load generator use).

Written for throughput, not completeness: one receive buffer per connection scanned in place
(no per-line coroutine in the hot loops, literals skipped without copying), commands written
as bytes, replies reduced to what the benchmark checks (status, counts, a few lines on
request). Pipelining: ``Imap.send`` returns a tag and ``Imap.reply(tag)`` can be awaited
later; LMTP sends MAIL/RCPT/DATA in one write; the auth client may keep several requests in
flight. Any unexpected answer raises ``ProtocolError`` with the command and the answer.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Self

READ_SIZE = 262_144


class ProtocolError(Exception):
    """The server answered something the benchmark did not expect."""


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Client context for the self-signed bench certificate (no verification; sessions are
    not resumed: every connection makes a full handshake)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """A stream with an explicit receive buffer: ``buf[pos:]`` is unread."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.pos = 0
        self.bytes_in = 0

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None = None) -> Self:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname="localhost" if tls else None,
            limit=READ_SIZE)
        return cls(reader, writer)

    @classmethod
    async def open_unix(cls, path: Path) -> Self:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=READ_SIZE)
        return cls(reader, writer)

    async def fill(self) -> None:
        data = await self.reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("connection closed by server")
        self.bytes_in += len(data)
        if self.pos >= len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > 65_536:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    async def readline(self) -> bytes:
        """The next line without its CRLF/LF."""
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos : i])
                self.pos = i + 1
                return line[:-1] if line.endswith(b"\r") else line
            await self.fill()

    async def skip(self, count: int) -> None:
        """Discard ``count`` bytes (a literal) without keeping them."""
        while True:
            available = len(self.buf) - self.pos
            if available >= count:
                self.pos += count
                return
            count -= available
            self.pos = len(self.buf)
            await self.fill()

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def abort(self) -> None:
        """Drop the connection at once (no goodbye)."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


@dataclass
class Reply:
    status: bytes  # OK / NO / BAD
    text: bytes  # rest of the tagged line
    untagged: int  # untagged lines ("* …") seen before it
    literal_bytes: int  # octets of literals seen
    lines: list[bytes] | None  # untagged lines (literals replaced by their size) when kept


class Imap(Connection):
    """IMAP4rev1 client side: tagged commands, literals, IDLE and APPEND continuations."""

    tag_number = 0

    @classmethod
    async def logged_in(cls, host: str, port: int, user: str, password: str,
                        tls: ssl.SSLContext | None = None) -> Self:
        """Connect, read the greeting and LOGIN."""
        imap = await cls.open(host, port, tls)
        try:
            await imap.greeting()
            await imap.login(user, password)
        except BaseException:
            imap.abort()
            raise
        return imap

    async def greeting(self) -> bytes:
        line = await self.readline()
        if not line.startswith(b"* OK"):
            raise ProtocolError(f"IMAP greeting: {line[:80]!r}")
        return line

    def send(self, command: bytes) -> bytes:
        """Write a command, return its tag (pipelining: read its reply later)."""
        self.tag_number += 1
        tag = b"b%d" % self.tag_number
        self.writer.write(tag + b" " + command + b"\r\n")
        return tag

    async def reply(self, tag: bytes, keep: bool = False) -> Reply:
        """Read through the tagged completion of ``tag``; count untagged lines, skip literals."""
        buf = self.buf
        pos = self.pos
        prefix = tag + b" "
        untagged = 0
        literal_bytes = 0
        lines: list[bytes] | None = [] if keep else None
        while True:
            i = buf.find(b"\n", pos)
            if i < 0:
                self.pos = pos
                await self.fill()
                buf, pos = self.buf, self.pos
                continue
            first = buf[pos]
            if first == 42:  # "*"
                untagged += 1
                if lines is not None:
                    lines.append(bytes(buf[pos : i - 1 if buf[i - 1] == 13 else i]))
            elif buf.startswith(prefix, pos):
                end = i - 1 if buf[i - 1] == 13 else i
                status, _, text = bytes(buf[pos + len(prefix) : end]).partition(b" ")
                self.pos = i + 1
                return Reply(status, text, untagged, literal_bytes, lines)
            if i - pos >= 3 and buf[i - 2] == 125 and buf[i - 1] == 13:  # "}\r\n": literal follows
                start = buf.rfind(b"{", pos, i)
                if start >= 0:
                    size = int(buf[start + 1 : i - 2].rstrip(b"+"))
                    literal_bytes += size
                    self.pos = i + 1
                    await self.skip(size)
                    buf, pos = self.buf, self.pos
                    continue
            pos = i + 1

    async def command(self, command: bytes, keep: bool = False) -> Reply:
        tag = self.send(command)
        await self.writer.drain()
        reply = await self.reply(tag, keep)
        if reply.status != b"OK":
            name = command.split(b" ", 1)[0].decode()
            raise ProtocolError(f"{name}: {_said(reply)}")
        return reply

    async def continuation(self, tag: bytes) -> bytes:
        """Wait for a "+" line (APPEND literal, IDLE); the command's failure raises."""
        while True:
            line = await self.readline()
            if line.startswith(b"+"):
                return line
            if line.startswith(tag + b" "):
                raise ProtocolError(f"expected continuation, got {line[:80]!r}")

    async def login(self, user: str, password: str) -> None:
        await self.command(b"LOGIN " + quote(user) + b" " + quote(password))

    async def append(self, mailbox: bytes, flags: bytes, data: bytes) -> Reply:
        tag = self.send(b"APPEND %s (%s) {%d}" % (mailbox, flags, len(data)))
        await self.writer.drain()
        await self.continuation(tag)
        self.writer.write(data + b"\r\n")
        await self.writer.drain()
        reply = await self.reply(tag)
        if reply.status != b"OK":
            raise ProtocolError(f"APPEND: {_said(reply)}")
        return reply

    async def idle(self) -> bytes:
        tag = self.send(b"IDLE")
        await self.writer.drain()
        await self.continuation(tag)
        return tag

    async def logout(self) -> None:
        await self.command(b"LOGOUT")


def _said(reply: Reply) -> str:
    return f"{reply.status.decode()} {reply.text[:80].decode(errors='replace')}"


def quote(value: str) -> bytes:
    return b'"' + value.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class Pop3(Connection):
    """POP3 client side: single-line commands and dot-terminated multi-line answers."""

    @classmethod
    async def logged_in(cls, host: str, port: int, user: str, password: str) -> Self:
        """Connect, read the greeting, USER and PASS."""
        pop = await cls.open(host, port)
        try:
            await pop.greeting()
            await pop.command(b"USER " + user.encode())
            await pop.command(b"PASS " + password.encode())
        except BaseException:
            pop.abort()
            raise
        return pop

    async def greeting(self) -> bytes:
        line = await self.readline()
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"POP3 greeting: {line[:80]!r}")
        return line

    async def command(self, command: bytes) -> bytes:
        self.writer.write(command + b"\r\n")
        await self.writer.drain()
        line = await self.readline()
        if not line.startswith(b"+OK"):
            name = command.split(b" ", 1)[0].decode()
            raise ProtocolError(f"{name}: {line[:80].decode(errors='replace')}")
        return line

    async def multiline(self, command: bytes) -> int:
        """Send a multi-line command; return the octets of its (dot-stuffed) data."""
        await self.command(command)
        start = self.pos  # data starts here; the terminator may be ".\r\n" right away
        scanned = 0  # bytes after `start` already searched for the terminator
        while True:
            if self.buf.startswith(b".\r\n", start):
                self.pos = start + 3
                return 0
            j = self.buf.find(b"\r\n.\r\n", start + max(0, scanned - 4))
            if j >= 0:
                self.pos = j + 5
                return j + 2 - start
            scanned = len(self.buf) - start
            self.pos = start
            await self.fill()
            start = self.pos


class Lmtp(Connection):
    """LMTP client side (RFC 2033): pipelined MAIL/RCPT/DATA, one final reply per recipient."""

    async def reply(self) -> tuple[int, bytes]:
        while True:
            line = await self.readline()
            if len(line) < 4 or line[3:4] != b"-":
                try:
                    return int(line[:3]), line[4:]
                except ValueError:
                    raise ProtocolError(f"LMTP reply: {line[:80]!r}") from None

    async def expect(self, code: int, what: str) -> None:
        got, text = await self.reply()
        if got != code:
            raise ProtocolError(f"{what}: {got} {text[:80].decode(errors='replace')}")

    async def hello(self) -> None:
        await self.expect(220, "greeting")
        self.writer.write(b"LHLO bench.test\r\n")
        await self.writer.drain()
        await self.expect(250, "LHLO")

    async def deliver(self, sender: str, recipients: list[str], stuffed: bytes) -> None:
        """One transaction; ``stuffed`` is CRLF, dot-stuffed data without the final dot."""
        out = [b"MAIL FROM:<%s>\r\n" % sender.encode()]
        out += [b"RCPT TO:<%s>\r\n" % r.encode() for r in recipients]
        out.append(b"DATA\r\n")
        self.writer.write(b"".join(out))
        await self.writer.drain()
        await self.expect(250, "MAIL FROM")
        for _ in recipients:
            await self.expect(250, "RCPT TO")
        await self.expect(354, "DATA")
        self.writer.write(stuffed + b".\r\n")
        await self.writer.drain()
        for _ in recipients:
            await self.expect(250, "end of DATA")

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.writer.drain()
        await self.expect(221, "QUIT")


def smtp_data(message: bytes) -> bytes:
    """LF message → CRLF, dot-stuffed, ending in CRLF (ready for ``Lmtp.deliver``)."""
    data = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


class AuthClient(Connection):
    """Dovecot auth-client protocol (see PROTOCOLS.md): handshake, then AUTH requests by id."""

    request_id = 0
    mechanisms: list[bytes]

    async def handshake(self) -> None:
        self.writer.write(b"VERSION\t1\t2\nCPID\t%d\n" % os.getpid())
        await self.writer.drain()
        self.mechanisms = []
        first = await self.readline()
        if not first.startswith(b"VERSION\t1\t"):
            raise ProtocolError(f"auth handshake: {first[:80]!r}")
        while True:
            line = await self.readline()
            if line == b"DONE":
                return
            if line.startswith(b"MECH\t"):
                self.mechanisms.append(line.split(b"\t")[1])

    def send_plain(self, user: str, password: str, service: str = "smtp") -> int:
        self.request_id += 1
        response = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        self.writer.write(b"AUTH\t%d\tPLAIN\tservice=%s\tsecured\tresp=%s\n"
                          % (self.request_id, service.encode(), response))
        return self.request_id

    async def result(self) -> tuple[bytes, int, bytes]:
        """(OK|FAIL|CONT, id, rest) of the next reply."""
        line = await self.readline()
        verb, _, rest = line.partition(b"\t")
        ident, _, rest = rest.partition(b"\t")
        try:
            return verb, int(ident), rest
        except ValueError:
            raise ProtocolError(f"auth reply: {line[:80]!r}") from None
