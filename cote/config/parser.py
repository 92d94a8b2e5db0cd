"""Syntax of the Dovecot 2.3 config language: files → a raw tree of blocks and settings.

Only the syntax lives here (comments, quoting, sections, ``!include``/``!include_try`` with globs,
``key = <file``); what the keys mean and whether values are valid is checked by ``model``.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from cote.config.errors import ConfigError


@dataclass(slots=True)
class RawSetting:
    key: str
    value: str            # unquoted text; for ``<file`` the path
    file: str
    line: int
    quoted: bool = False  # quoted values are not ``$``-expanded
    file_ref: bool = False


@dataclass(slots=True)
class RawBlock:
    kind: str
    name: str
    file: str
    line: int
    end_line: int = 0
    end_file: str = ""
    items: list[RawSetting | RawBlock] = field(default_factory=list)


def unescape(text: str) -> str:
    out = []
    it = iter(text)
    for c in it:
        if c == "\\":
            c = next(it, "")
        out.append(c)
    return "".join(out)


def _strip_comment(line: str) -> tuple[str, bool]:
    """Cut a ``#`` comment outside quotes; the flag says it was ambiguous (no blank before)."""
    quote = ""
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i], i > 0 and line[i - 1] not in " \t"
        i += 1
    return line, False


def _split_name(text: str) -> tuple[str, str]:
    """First token (quoted or up to a blank) and the rest."""
    if text[:1] in ("\"", "'"):
        q = text[0]
        i = 1
        while i < len(text) and text[i] != q:
            i += 2 if text[i] == "\\" else 1
        return unescape(text[1:i]), text[i + 1:].lstrip()
    i = 0
    while i < len(text) and text[i] not in " \t":
        i += 1
    return text[:i], text[i:].lstrip()


class Parser:
    """Reads a config file and everything it includes into one ``RawBlock`` (kind "")."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.files: list[str] = []
        # doveconf reports an unclosed section after printing what it parsed
        self.late_error: ConfigError | None = None

    def parse(self, path: str) -> RawBlock:
        root = RawBlock("", "", path, 0)
        stack = [root]
        try:
            self._parse_file(path, stack, [], None)
        except FileNotFoundError:
            raise ConfigError(f"open({path}) failed: No such file or directory") from None
        except OSError as e:
            raise ConfigError(f"open({path}) failed: {e.strerror}") from None
        if len(stack) > 1:
            top = stack[-1]
            msg = f"Missing '}}' (section started at {top.file}:{top.line})"
            self.late_error = ConfigError(f"Error in configuration file {path}: {msg}",
                                          file=path, line=None, message=msg,
                                          in_managesieve=True)
        return root

    def _parse_file(self, path: str, stack: list[RawBlock], including: list[str],
                    at: tuple[str, int] | None) -> None:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
        self.files.append(path)
        including = [*including, path]
        lines = text.split("\n")
        lineno = 0
        pending = ""
        pending_start = 0
        for raw in lines:
            lineno += 1
            if raw.endswith("\r"):
                raw = raw[:-1]
            if raw.endswith("\\"):
                if not pending:
                    pending_start = lineno
                    pending = raw[:-1].rstrip()
                else:
                    pending += " " + raw[:-1].strip()
                continue
            if pending:
                raw = pending + " " + raw.lstrip()
                pending = ""
                start = pending_start
            else:
                start = lineno
            self._line(raw, path, start, stack, including)

    def _error(self, file: str, line: int, message: str) -> ConfigError:
        return ConfigError(f"Error in configuration file {file} line {line}: {message}",
                           file=file, line=line, message=message)

    def _line(self, raw: str, path: str, lineno: int, stack: list[RawBlock],
              including: list[str]) -> None:
        line = raw.strip()
        if not line or line[0] == "#":
            return
        line, ambiguous = _strip_comment(line)
        if ambiguous:
            self.warnings.append(
                f"Configuration file {path} line {lineno}: Ambiguous '#' character in line, "
                "treating it as comment. Add a space before it to remove this warning.")
        line = line.rstrip()
        if not line:
            return
        if line == "}":
            if len(stack) == 1:
                raise self._error(path, lineno, "Unexpected '}'")
            done = stack.pop()
            done.end_line = lineno
            done.end_file = path
            return
        if line[0] == "!":
            word, _, arg = line.partition(" ")
            arg = arg.strip()
            if word in ("!include", "!include_try"):
                self._include(arg, word == "!include_try", path, lineno, stack, including)
                return
        # key: up to a blank or '='
        i = 0
        n = len(line)
        while i < n and line[i] not in " \t=":
            i += 1
        key = line[:i]
        rest = line[i:].lstrip()
        if not key and rest.startswith("="):
            raise self._error(path, lineno, "Missing key name ('=' at the beginning of line)")
        if rest.startswith("="):
            value = rest[1:].strip()
            quoted = False
            file_ref = False
            if value.startswith("<"):
                value = value[1:].strip()
                file_ref = True
            elif len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
                value = unescape(value[1:-1])
                quoted = True
            stack[-1].items.append(RawSetting(key, value, path, lineno, quoted, file_ref))
            return
        if rest == "{":
            name = ""
        else:
            name, rest = _split_name(rest)
            if not rest.startswith("{"):
                raise self._error(path, lineno, "Expecting '{'")
            if rest.strip() != "{":
                raise self._error(path, lineno, "Garbage after '{'")
        if not rest.startswith("{"):
            raise self._error(path, lineno, "Expecting '{'")
        if rest.strip() != "{":
            raise self._error(path, lineno, "Garbage after '{'")
        block = RawBlock(key, name, path, lineno)
        stack[-1].items.append(block)
        stack.append(block)

    def _include(self, arg: str, optional: bool, path: str, lineno: int,  # noqa: PLR0917
                 stack: list[RawBlock], including: list[str]) -> None:
        if len(arg) >= 2 and arg[0] in "\"'" and arg[-1] == arg[0]:
            arg = unescape(arg[1:-1])
        if not arg.startswith("/"):
            arg = os.path.join(os.path.dirname(path), arg)
        matches = sorted(glob.glob(arg)) if glob.has_magic(arg) else (
            [arg] if os.path.exists(arg) else [])
        if not matches:
            if optional:
                return
            raise self._error(path, lineno, "No matches")
        for m in matches:
            if os.path.isdir(m):
                continue
            if m in including:
                raise self._error(path, lineno, f"Recursive include file: {m}")
            try:
                self._parse_file(m, stack, including, (path, lineno))
            except ConfigError:
                raise
            except OSError as e:
                if optional and isinstance(e, FileNotFoundError):
                    continue
                raise self._error(path, lineno, f"open({m}) failed: {e.strerror}") from None
