"""A minimal raw IMAP client for differential tests: exact response bytes, literals included.

imaplib re-splits literals; these tests compare octets, so responses are kept verbatim and
FETCH items are cut out of them with a tiny value scanner.
"""

from __future__ import annotations

import re
import socket

_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n$")


class RawImap:
    def __init__(self, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.tagno = 0
        self._line()
        self.command(b"LOGIN " + user.encode() + b" " + password.encode())

    def close(self) -> None:
        try:
            self.command(b"LOGOUT")
        finally:
            self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _response(self) -> bytes:
        out = b""
        while True:
            line = self._line()
            out += line
            m = _LITERAL_END.search(line)
            if not m:
                return out
            out += self._exact(int(m.group(1)))

    def command(self, cmd: bytes, literal: bytes | None = None,
                binary: bool = False) -> tuple[list[bytes], bytes]:
        """Send a command (with an optional trailing literal); untagged lines and the tagged
        completion, each complete with its literals."""
        self.tagno += 1
        tag = b"C%d" % self.tagno
        if literal is None:
            self.sock.sendall(tag + b" " + cmd + b"\r\n")
        else:
            prefix = b"~" if binary else b""
            self.sock.sendall(tag + b" " + cmd + b" " + prefix + b"{%d}\r\n" % len(literal))
            cont = self._line()
            if not cont.startswith(b"+"):
                return [], cont
            self.sock.sendall(literal + b"\r\n")
        untagged: list[bytes] = []
        while True:
            resp = self._response()
            if resp.startswith(tag + b" "):
                return untagged, resp
            untagged.append(resp)

    def append(self, mailbox: bytes, message: bytes) -> int:
        """APPEND and return the new UID (UIDPLUS)."""
        binary = b"\x00" in message
        _, done = self.command(b"APPEND " + mailbox, message, binary=binary)
        m = re.search(rb"APPENDUID \d+ (\d+)", done)
        if not m:
            raise AssertionError(f"APPEND failed: {done!r}")
        return int(m.group(1))

    def fetch(self, uid: int, items: bytes) -> dict[bytes, bytes]:
        """UID FETCH and return {item name as sent back: raw value bytes}."""
        untagged, done = self.command(b"UID FETCH %d (%b)" % (uid, items))
        if b" OK " not in done:
            raise AssertionError(f"FETCH failed: {done!r}")
        result: dict[bytes, bytes] = {}
        for resp in untagged:
            m = re.match(rb"\* \d+ FETCH \(", resp)
            if m:
                result.update(fetch_items(resp, m.end()))
        return result


def _value_end(data: bytes, pos: int) -> int:
    """End offset of the IMAP value starting at ``pos``."""
    c = data[pos:pos + 1]
    if c == b'"':
        pos += 1
        while data[pos:pos + 1] != b'"':
            pos += 2 if data[pos:pos + 1] == b"\\" else 1
        return pos + 1
    if c in (b"{", b"~"):
        m = re.compile(rb"~?\{(\d+)\}\r\n").match(data, pos)
        assert m, data[pos:pos + 20]
        return m.end() + int(m.group(1))
    if c == b"(":
        pos += 1
        while data[pos:pos + 1] != b")":
            if data[pos:pos + 1] == b" ":
                pos += 1
                continue
            pos = _value_end(data, pos)
        return pos + 1
    m = re.compile(rb"[^ ()\r\n]+").match(data, pos)
    assert m, data[pos:pos + 20]
    return m.end()


def fetch_items(resp: bytes, pos: int) -> dict[bytes, bytes]:
    items: dict[bytes, bytes] = {}
    while resp[pos:pos + 1] != b")":
        if resp[pos:pos + 1] == b" ":
            pos += 1
            continue
        m = re.compile(rb"[A-Z0-9.]+(\[[^\]]*\])?(<\d+>)?").match(resp, pos)
        assert m, resp[pos:pos + 40]
        name = m.group(0)
        pos = m.end() + 1
        end = _value_end(resp, pos)
        items[name] = resp[pos:end]
        pos = end
    return items
