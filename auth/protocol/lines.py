"""An incremental LF-terminated line splitter with a maximum line length.

Bytes arrive in arbitrary chunks; the buffer remembers how far it has already searched for
LF, so input that trickles in a byte at a time costs O(n), not O(n²). A line longer than the
limit is an error that ends the connection, as in Dovecot: its input buffer of ``limit`` bytes
must hold the whole line with its LF, so the longest line has ``limit - 1`` bytes. Lines that
were complete before the overflow are still delivered (Dovecot handles them first, too).
A CR before the LF is dropped, as Dovecot's line reader does.
"""

from __future__ import annotations


class LineBuffer:
    __slots__ = ("_buf", "_scanned", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self.limit = limit
        self.overflowed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines (without CR LF or LF) found after adding ``data``.

        After an over-long line, ``overflowed`` is set and nothing more is returned.
        """
        if self.overflowed:
            return []
        self._buf += data
        lines: list[bytes] = []
        start = 0
        buf = self._buf
        pos = self._scanned
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                break
            if end - start >= self.limit:
                return self._overflow(lines)
            stop = end - 1 if end > start and buf[end - 1] == 0x0D else end
            lines.append(bytes(buf[start:stop]))
            start = pos = end + 1
        if start:
            del buf[:start]
        self._scanned = len(buf)
        if self._scanned >= self.limit:
            return self._overflow(lines)
        return lines

    def _overflow(self, lines: list[bytes]) -> list[bytes]:
        self.overflowed = True
        self._buf.clear()
        self._scanned = 0
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held."""
        return len(self._buf)
