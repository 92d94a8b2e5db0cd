"""doveadm's output formatters (``-f flow|tab|table|pager|json``) for ``coteadm``.

A command declares its columns with ``header()`` and then feeds values row by row with
``value()``; the formatter decides the layout exactly as doveadm's does:

- ``tab``: a tab-separated title line, then rows; the title line is ended at the first value
  (or at flush when there is none).
- ``flow``: ``title=value`` pairs separated by spaces, one row per line.
- ``pager``: ``title: value`` lines, rows separated by a form feed line.
- ``table``: up to 100 rows are buffered to size the columns to 80 characters (shrinking
  from the right when too wide, giving half of the spare room to the column flagged EXPAND or
  else to the last one); values are padded, right-justified columns on the left.
- ``json``: ``[{"key":"value",...},...]`` with no newline.

doveadm writes formatter output and plain ``printf`` text to two different buffered streams,
the formatter's first: ``Output`` keeps both and writes them in that order, so commands that
mix the two come out byte-identical.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

FORMATTERS = ("flow", "tab", "table", "pager", "json")
RIGHT = 0x01
HIDE_TITLE = 0x04
EXPAND = 0x08
NUMBER = 0x10
COLUMNS = 80
MAX_BUFFER_LINES = 100


@dataclass(slots=True)
class _Header:
    key: str
    title: str
    flags: int
    length: int = 0
    min_length: int = 0
    max_length: int = 0


class Printer:
    """One formatter instance; ``text`` accumulates what it prints."""

    def __init__(self, kind: str, *, hide_titles: bool = False) -> None:
        if kind not in FORMATTERS:
            raise ValueError(kind)
        self.kind = kind
        self.hide_titles = hide_titles
        self.headers: list[_Header] = []
        self.parts: list[str] = []
        self.idx = 0
        self.first_page = True
        self.tab_header_written = False
        self.json_rows = 0
        self.buffered: list[str] = []
        self.lengths_set = False
        self.flushed = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def header(self, key: str, title: str | None = None, flags: int = 0) -> None:
        title = key if title is None else title
        self.headers.append(_Header(key, title, flags, len(title), len(title), len(title)))
        if self.kind == "tab" and not self.hide_titles:
            if len(self.headers) > 1:
                self.parts.append("\t")
            self.parts.append(title)

    def value(self, value: str) -> None:
        getattr(self, "_" + self.kind)(value)

    def values(self, *values: str) -> None:
        for v in values:
            self.value(v)

    def _next(self) -> _Header:
        hdr = self.headers[self.idx]
        self.idx = (self.idx + 1) % len(self.headers)
        return hdr

    # -- tab --------------------------------------------------------------------------------
    def _tab_flush_header(self) -> None:
        if not self.tab_header_written:
            if not self.hide_titles:
                self.parts.append("\n")
            self.tab_header_written = True

    def _tab(self, value: str) -> None:
        self._tab_flush_header()
        if self.idx > 0:
            self.parts.append("\t")
        self.parts.append(value)
        self._next()
        if self.idx == 0:
            self.parts.append("\n")

    # -- flow -------------------------------------------------------------------------------
    def _flow(self, value: str) -> None:
        hdr = self._next()
        if not hdr.flags & HIDE_TITLE:
            self.parts.append(hdr.title + "=")
        self.parts.append(value)
        self.parts.append("\n" if self.idx == 0 else " ")

    # -- pager ------------------------------------------------------------------------------
    def _pager(self, value: str) -> None:
        if self.idx == 0 and not self.first_page:
            self.parts.append("\f\n")
        self.first_page = False
        hdr = self._next()
        if not hdr.flags & HIDE_TITLE:
            self.parts.append(hdr.title + ": ")
        self.parts.append(value + "\n")

    # -- json -------------------------------------------------------------------------------
    def _json(self, value: str) -> None:
        if self.idx == 0:
            self.parts.append("[" if self.json_rows == 0 else ",")
            self.parts.append("{")
            self.json_rows += 1
        else:
            self.parts.append(",")
        hdr = self._next()
        self.parts.append(json.dumps(hdr.key) + ":")
        self.parts.append(value if hdr.flags & NUMBER else json.dumps(value, ensure_ascii=False))
        if self.idx == 0:
            self.parts.append("}")

    # -- table ------------------------------------------------------------------------------
    def _table(self, value: str) -> None:
        if not self.lengths_set:
            if len(self.buffered) // len(self.headers) < MAX_BUFFER_LINES:
                self.buffered.append(value)
                return
            self._table_buffer_flush()
        self._table_cell(value)

    def _table_sizes(self) -> None:
        self.lengths_set = True
        n = len(self.headers)
        for i, value in enumerate(self.buffered):
            hdr = self.headers[i % n]
            size = len(value)
            hdr.min_length = min(hdr.min_length, size)
            if size > hdr.max_length:
                hdr.max_length = hdr.length = size
        total = sum(h.max_length + 1 for h in self.headers) - 1
        while total > COLUMNS:
            before = total
            for i in range(n - 1, -1, -1):
                hdr = self.headers[i]
                diff = hdr.length - hdr.min_length
                if total - diff <= COLUMNS:
                    cut = total - COLUMNS
                    hdr.length -= cut
                    total -= cut
                    break
                if diff > 0:
                    hdr.length -= 1 if diff == 1 else diff // 2
            if total == before:
                break
        if total < COLUMNS:
            target = next((h for h in self.headers if h.flags & EXPAND), self.headers[-1])
            target.length += (COLUMNS - total) // 2

    def _table_buffer_flush(self) -> None:
        self._table_sizes()
        if not self.hide_titles and not all(h.flags & HIDE_TITLE for h in self.headers):
            self.parts.append(" ".join(self._pad(h, h.title) for h in self.headers) + "\n")
        for value in self.buffered:
            self._table_cell(value)
        self.buffered = []

    @staticmethod
    def _pad(hdr: _Header, value: str) -> str:
        return value.rjust(hdr.length) if hdr.flags & RIGHT else value.ljust(hdr.length)

    def _table_cell(self, value: str) -> None:
        hdr = self._next()
        self.parts.append(self._pad(hdr, value))
        self.parts.append("\n" if self.idx == 0 else " ")

    # -- end --------------------------------------------------------------------------------
    def flush(self) -> None:
        if self.flushed:
            return
        self.flushed = True
        if self.kind == "tab":
            self._tab_flush_header()
        elif self.kind == "table":
            if not self.lengths_set and self.headers:
                self._table_buffer_flush()
        elif self.kind == "json":
            self.parts.append("]" if self.json_rows else "[]")
        elif self.idx != 0:
            self.parts.append("\n")
            self.idx = 0


class Output:
    """What a command prints: the formatter's stream, then the ``printf`` stream."""

    def __init__(self, forced: str | None) -> None:
        self.forced = forced
        self.printer: Printer | None = Printer(forced) if forced else None
        self.plain: list[str] = []
        self.formatted: list[str] = []

    def format(self, text: str) -> None:
        """Text of doveadm's ``formatted`` printer (kick's ``%{result} ``): the print stream."""
        self.formatted.append(text)

    def init(self, default: str) -> Printer:
        """The command's formatter: the ``-f`` one, else the command's default."""
        if self.printer is None:
            self.printer = Printer(default)
        return self.printer

    def write(self, text: str) -> None:
        self.plain.append(text)

    def finish(self) -> str:
        text = "".join(self.formatted)
        if self.printer is not None:
            self.printer.flush()
            text += self.printer.text
        return text + "".join(self.plain)

    def emit(self) -> None:
        sys.stdout.write(self.finish())
        sys.stdout.flush()
