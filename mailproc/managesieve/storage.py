"""Pigeonhole's file storage for a user's Sieve scripts, so Dovecot and cote share them.

``sieve = file:~/sieve;active=~/.dovecot.sieve``: each script is ``~/sieve/NAME.sieve``; the
active one is the symlink ``~/.dovecot.sieve -> sieve/NAME.sieve`` (relative, as Pigeonhole
makes it). Every write is a temporary file (in ``~/sieve/tmp``, Pigeonhole's place) renamed
into place, and activation renames a new symlink over the old one, so a delivery reading the
active script never sees half of one. Runs as the user, in the user's one process.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import unicodedata
from dataclasses import dataclass

SUFFIX = ".sieve"
DEFAULT_LOCATION = "file:~/sieve;active=~/.dovecot.sieve"
MAX_NAME = 256


class ScriptError(Exception):
    """A refused operation: ``code`` is the response code (NONEXISTENT, ACTIVE, ...)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True, slots=True)
class Quota:
    max_scripts: int = 0  # sieve_quota_max_scripts (0: unlimited)
    max_storage: int = 0  # sieve_quota_max_storage, bytes
    max_script_size: int = 1024 * 1024  # sieve_max_script_size


def sanitized(name: str, limit: int = 80) -> str:
    """A name as Pigeonhole quotes it in messages: control characters as '?', at most
    ``limit`` characters with '...' marking a cut."""
    clean = "".join("?" if unicodedata.category(c) == "Cc" else c for c in name)
    return clean if len(clean) <= limit else clean[:limit - 3] + "..."


def valid_name(name: str) -> bool:
    """Pigeonhole's rule: 1..256 characters of valid UTF-8, no '/', no control characters."""
    if not name or len(name) > MAX_NAME or "/" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # surrogate-escaped invalid UTF-8
    return not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in name)


def parse_location(location: str, home: str) -> tuple[str, str]:
    """(script directory, active-script path) from a ``sieve`` setting."""
    location = location or DEFAULT_LOCATION
    driver, _, rest = location.partition(":")
    if driver not in ("file",) or not rest:
        rest = location  # a bare path means the file driver
    path, *options = rest.split(";")
    active = ""
    for opt in options:
        key, _, value = opt.partition("=")
        if key == "active":
            active = value

    def expand(p: str) -> str:
        if p == "~" or p.startswith("~/"):
            return home + p[1:]
        return p
    script_dir = expand(path)
    if not active:
        active = os.path.join(os.path.dirname(script_dir.rstrip("/")), ".dovecot.sieve")
    return script_dir.rstrip("/") or "/", expand(active)


def _makedirs(path: str) -> None:
    """Create missing directories private to the user (0700, as Pigeonhole and Dovecot
    create homes and script directories), whatever the umask."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path.rstrip("/"))
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)


class ScriptStorage:
    def __init__(self, script_dir: str, active_path: str, quota: Quota = Quota(), *,
                 fsync: bool = True) -> None:
        self.dir = script_dir
        self.active_path = active_path
        self.quota = quota
        self.fsync = fsync  # mail_fsync = never turns it off

    # -- reading ---------------------------------------------------------------------------------
    def path(self, name: str) -> str:
        return os.path.join(self.dir, name + SUFFIX)

    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            if entry.endswith(SUFFIX) and len(entry) > len(SUFFIX):
                name = entry[:-len(SUFFIX)]
                if valid_name(name) and os.path.isfile(os.path.join(self.dir, entry)):
                    out.append(name)
        return sorted(out)

    def active(self) -> str | None:
        """The active script's name when the active path is a symlink into our directory."""
        try:
            target = os.readlink(self.active_path)
        except OSError:
            return None
        full = os.path.normpath(os.path.join(os.path.dirname(self.active_path), target))
        if os.path.dirname(full) != os.path.normpath(self.dir) or not full.endswith(SUFFIX):
            return None
        name = os.path.basename(full)[:-len(SUFFIX)]
        return name if os.path.isfile(full) else None

    def get(self, name: str) -> bytes:
        self._check_name(name, put=False)
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ScriptError(f"Sieve script `{sanitized(name)}' not found",
                              "NONEXISTENT") from None

    def size(self, name: str) -> int:
        return os.stat(self.path(name)).st_size

    # -- quota -----------------------------------------------------------------------------------
    def check_size(self, size: int) -> None:
        limit = self.quota.max_script_size
        if limit and size > limit:
            raise ScriptError(f"Script is too large (max {limit} bytes).", "QUOTA/MAXSIZE")

    def check_quota(self, name: str, size: int) -> None:
        """What HAVESPACE and PUTSCRIPT check, in Pigeonhole's order: the script's size, then
        the count and storage of the *other* scripts plus this one."""
        self.check_size(size)
        q = self.quota
        if not q.max_scripts and not q.max_storage:
            return
        others = [n for n in self.names() if n != name]
        if q.max_scripts and len(others) + 1 > q.max_scripts:
            raise ScriptError(f"Script count quota exceeded (max {q.max_scripts} scripts).",
                              "QUOTA/MAXSCRIPTS")
        used = 0
        for other in others:
            try:
                used += self.size(other)
            except FileNotFoundError:
                continue
            # Pigeonhole compares while it adds up the other scripts: with none stored there
            # is nothing to compare (HAVESPACE then always succeeds on the storage limit).
            if q.max_storage and used + size > q.max_storage:
                raise ScriptError(f"Script storage quota exceeded (max {q.max_storage} bytes).",
                                  "QUOTA/MAXSTORAGE")

    # -- writing ---------------------------------------------------------------------------------
    def _check_name(self, name: str, *, put: bool, new: bool = False) -> None:
        if not valid_name(name):
            shown = sanitized(name)
            if new:
                raise ScriptError(f"Invalid new Sieve script name `{shown}'.")
            if put:
                raise ScriptError(f"Invalid Sieve script name `{shown}'.")
            raise ScriptError(f"Invalid script name `{shown}'.")

    def _tmp_path(self, name: str) -> str:
        tmp = os.path.join(self.dir, "tmp")
        _makedirs(tmp)
        stamp = f"{int(time.time())}.M{secrets.randbelow(1000000)}P{os.getpid()}"
        return os.path.join(tmp, f"{name}_{stamp}.{socket.gethostname()}{SUFFIX}")

    def put(self, name: str, data: bytes) -> None:
        self._check_name(name, put=True)
        tmp = self._tmp_path(name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.rename(tmp, self.path(name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def activate(self, name: str) -> bool:
        """Point the active symlink at ``name``; False when it already did."""
        self._check_name(name, put=False)
        if not os.path.isfile(self.path(name)):
            raise ScriptError(f"Sieve script `{sanitized(name)}' not found", "NONEXISTENT")
        if self.active() == name:
            return False
        self._link(name)
        return True

    def _link(self, name: str) -> None:
        parent = os.path.dirname(self.active_path)
        target = os.path.relpath(self.path(name), parent)
        tmp = f"{self.active_path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        os.symlink(target, tmp)
        try:
            if os.path.exists(self.active_path) and not os.path.islink(self.active_path):
                # A hand-made regular file: keep it as a script, as Pigeonhole does.
                os.rename(self.active_path, self.path("dovecot.orig"))
            os.rename(tmp, self.active_path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def deactivate(self) -> bool:
        """Remove the active symlink; False when no script was active."""
        if self.active() is None:
            return False
        os.unlink(self.active_path)
        return True

    def delete(self, name: str) -> None:
        self._check_name(name, put=False)
        if not os.path.isfile(self.path(name)):
            raise ScriptError(f"Sieve script `{sanitized(name)}' not found", "NONEXISTENT")
        if self.active() == name:
            raise ScriptError("Cannot delete the active Sieve script.", "ACTIVE")
        os.unlink(self.path(name))

    def rename(self, old: str, new: str) -> None:
        self._check_name(old, put=False)
        if not os.path.isfile(self.path(old)):
            raise ScriptError(f"Sieve script `{sanitized(old)}' not found", "NONEXISTENT")
        self._check_name(new, put=True, new=True)
        if os.path.exists(self.path(new)):
            raise ScriptError("A sieve script with that name already exists.",
                              "ALREADYEXISTS")
        was_active = self.active() == old
        # A hard link, not rename(): it fails if ``new`` appeared meanwhile (rename would
        # replace it), and the active symlink stays valid until it points at the new name.
        try:
            os.link(self.path(old), self.path(new))
        except FileExistsError:
            raise ScriptError("A sieve script with that name already exists.",
                              "ALREADYEXISTS") from None
        if was_active:
            self._link(new)
        os.unlink(self.path(old))
