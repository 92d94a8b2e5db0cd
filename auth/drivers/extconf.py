"""Reader for the ``args`` files of SQL and LDAP databases (``dovecot-sql.conf.ext``,
``dovecot-ldap.conf.ext``): flat ``key = value`` lines in Dovecot's settings syntax.

Admins keep these files unchanged, so the syntax is Dovecot's: ``#`` outside quotes starts a
comment, a line ending in ``\\`` continues on the next one (joined with one space), a value in
double or single quotes is unquoted with backslash escapes, ``!include`` / ``!include_try``
read another file (relative paths are relative to the including file). Keys a database does
not know are a configuration error, as in Dovecot.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from cote.auth.drivers.base import DriverError


def _strip_comment(line: str) -> str:
    i = 0
    while i < len(line):
        c = line[i]
        if c in "'\"":
            j = i + 1
            while j < len(line) and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            if j >= len(line):
                return line
            i = j + 1
            continue
        if c == "#":
            return line[:i]
        i += 1
    return line


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        out: list[str] = []
        body = value[1:-1]
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return value


def read(path: str, known: Iterable[str], *, kind: str) -> dict[str, str]:
    """The settings of ``path``; ``known`` keys only (others raise :class:`DriverError`)."""
    allowed = frozenset(known)
    settings: dict[str, str] = {}
    _read_into(settings, path, allowed, kind, depth=0)
    return settings


def _read_into(settings: dict[str, str], path: str, allowed: frozenset[str], kind: str,
               depth: int) -> None:
    if depth > 10:
        raise DriverError(f"{kind}: {path}: !include nested too deeply")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DriverError(f"{kind}: Can't open configuration file {path}: "
                          f"{e.strerror}") from e
    pending = ""
    for number, raw in enumerate(lines, 1):
        line = _strip_comment(raw.strip()).strip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if not line:
            continue
        if line.startswith("!include"):
            word, _, target = line.partition(" ")
            target = _unquote(target.strip())
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            matches = sorted(glob.glob(target))
            if not matches and word == "!include":
                raise DriverError(f"{kind}: {path} line {number}: "
                                  f"No matches for include: {target}")
            for match in matches:
                _read_into(settings, match, allowed, kind, depth + 1)
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq:
            raise DriverError(f"{kind}: {path} line {number}: Missing '='")
        if key not in allowed:
            raise DriverError(f"{kind}: {path} line {number}: Unknown setting: {key}")
        settings[key] = _unquote(value.strip())
