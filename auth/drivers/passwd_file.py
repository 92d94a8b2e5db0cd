"""passwd-file: Dovecot's ``user:password:uid:gid:gecos:home:shell:extra_fields`` files.

A file is parsed once into a dict and re-read when its mtime, size or inode changes, so an
admin's edit applies to the next login without a reload. The path may contain ``%``
variables (one file per domain); ``scheme=`` sets the default password scheme and
``username_format=`` the key looked up (default ``%u``).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cote.auth.drivers.base import (
    DriverError,
    PassdbDriver,
    PassdbLookup,
    UserdbDriver,
    UserdbLookup,
    split_args,
)
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest
from cote.variables import VariableError

STAT_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Entry:
    password: str
    uid: str
    gid: str
    home: str
    extra: tuple[tuple[str, str | None], ...]  # a bare word is a key without a value


class PasswdFile:
    """One parsed file, refreshed when it changes on disk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.entries: dict[str, Entry] = {}
        self.checked = -1.0  # monotonic second of the last stat()

    def current(self) -> dict[str, Entry]:
        """The entries; raises OSError with Dovecot's wording (``open(path) failed: …``)."""
        try:
            return self._current()
        except OSError as e:
            raise OSError(e.errno, f"open({self.path}) failed: {e.strerror}") from e

    def _current(self) -> dict[str, Entry]:
        # As Dovecot: the file is stat()ed at most once a second (a stat per login was 14% of
        # the auth process's time in bench auth).
        now = time.monotonic()
        if self.stamp is not None and now - self.checked < STAT_INTERVAL:
            return self.entries
        self.checked = now
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self.stamp:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                self.entries = parse(f.read())
            self.stamp = stamp
        return self.entries


def parse(text: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split(":", 7)
        cols += [""] * (8 - len(cols))
        name, password, uid, gid, _gecos, home, _shell, extra = cols
        fields: list[tuple[str, str | None]] = []
        for word in extra.split():
            key, eq, value = word.partition("=")
            fields.append((key, value if eq else None))
        entries.setdefault(name, Entry(password, uid, gid, home, tuple(fields)))
    return entries


class _Base:
    def __init__(self, args: str) -> None:
        options, rest = split_args(args)
        if len(rest) != 1:
            raise DriverError(f"passwd-file: args must name one file: {args!r}")
        self.path_template = rest[0]
        self.scheme = options.get("scheme", "CRYPT")
        self.username_format = options.get("username_format", "%u")
        self.files: dict[str, PasswdFile] = {}

    def find(self, request: AuthRequest) -> Entry | None:
        """The user's entry; raises MissingFile when a per-user/domain file is absent."""
        return self.find_traced(request)[0]

    def find_traced(self, request: AuthRequest) -> tuple[Entry | None, tuple[str, ...]]:
        """The entry and the auth_debug line Dovecot writes for the lookup."""
        try:
            path = request.expand(self.path_template) if "%" in self.path_template \
                else self.path_template
            key = request.user if self.username_format == "%u" else \
                request.expand(self.username_format)
        except VariableError as e:
            raise OSError(str(e)) from e
        return self._find(path, key), (f"lookup: user={key} file={path}",)

    def _find(self, path: str, key: str) -> Entry | None:
        pf = self.files.get(path)
        if pf is None:
            pf = self.files[path] = PasswdFile(path)
        try:
            return pf.current().get(key)
        except FileNotFoundError:
            if path == self.path_template:
                raise
            del self.files[path]
            raise MissingFile(path) from None


class MissingFile(Exception):
    """A templated passwd-file that does not exist: Dovecot's user unknown (no error)."""

    def lookup_text(self) -> str:
        return f"missing passwd file: {self.args[0]}"


class PasswdFilePassdb(_Base, PassdbDriver):
    name = "passwd-file"

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        try:
            entry, debug = self.find_traced(request)
        except MissingFile as e:
            return PassdbLookup(PassdbResult.USER_UNKNOWN, log=e.lookup_text(), log_plain=True)
        except OSError as e:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=e.strerror or str(e))
        if entry is None:
            return PassdbLookup(PassdbResult.USER_UNKNOWN, log="unknown user", debug=debug)
        fields = dict(entry.extra)
        password: str | None = entry.password
        if "nopassword" in fields:
            password = None
        return PassdbLookup(PassdbResult.OK, password, fields, self.scheme, debug=debug)


class PasswdFileUserdb(_Base, UserdbDriver):
    name = "passwd-file"

    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        try:
            entry, debug = self.find_traced(request)
        except MissingFile as e:
            return UserdbLookup(PassdbResult.USER_UNKNOWN, log=e.lookup_text(), log_plain=True)
        except OSError as e:
            return UserdbLookup(PassdbResult.INTERNAL_FAILURE, log=e.strerror or str(e))
        if entry is None:
            return UserdbLookup(PassdbResult.USER_UNKNOWN, log="unknown user", debug=debug)
        fields: dict[str, str | None] = {}
        for key, column in (("uid", entry.uid), ("gid", entry.gid), ("home", entry.home)):
            if column:
                fields[key] = column
        # As in Dovecot, only the userdb_ extra fields are userdb fields.
        for key, value in entry.extra:
            if key.startswith("userdb_"):
                fields[key[7:]] = value
        return UserdbLookup(PassdbResult.OK, fields, debug=debug)

    def can_iterate(self) -> bool:
        return "%" not in self.path_template

    async def iterate(self) -> AsyncIterator[str]:
        for name in PasswdFile(self.path_template).current():
            yield name
