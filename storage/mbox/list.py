"""The mbox mailbox list: ``mbox:~/mail:INBOX=/var/mail/%u`` as Dovecot lays it out.

Every mailbox is a file below the root (``A/B`` is ``~/mail/A/B``, levels in modified UTF-7
unless ``:UTF-8``), directories are ``\\Noselect`` parents, files are ``\\NoInferiors``; INBOX
is the ``INBOX=`` file (``<root>/inbox`` without it) and is always listed. A file
written after it was last read is ``\\Marked`` (atime < mtime in whole seconds, the UW-IMAP
rule Dovecot follows). Dot files
(``.subscriptions``, Dovecot's ``.imap`` index dirs) and ``*.lock`` files are not mailboxes.
Subscriptions are ``<root>/.subscriptions`` in Dovecot's format.
"""

from __future__ import annotations

import builtins
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cote.storage import subscriptions as subsfile
from cote.storage.api import MailboxInfo, MailboxList, NoQuota, QuotaPolicy
from cote.storage.dotlock import replace_file
from cote.storage.errors import (
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    StorageError,
    os_errors_as_storage_errors,
)
from cote.storage.layout import FsLayout
from cote.storage.location import MailLocation, parse_location
from cote.storage.mbox import locking
from cote.storage.mbox.mailbox import MboxMailbox
from cote.storage.mbox.pending import NAME as PENDING_NAME
from cote.storage.mbox.pending import PendingChanges
from cote.storage.pattern import compile_pattern, normalize_inbox

SUBSCRIPTIONS = ".subscriptions"


@dataclass(frozen=True, slots=True)
class MboxSettings:
    read_locks: tuple[str, ...] = locking.DEFAULT_READ
    write_locks: tuple[str, ...] = locking.DEFAULT_WRITE
    lock_timeout: float = locking.DEFAULT_TIMEOUT
    lazy_writes: bool = True

    @classmethod
    def from_config(cls, get: Callable[[str], object]) -> MboxSettings:
        def look(key: str) -> str | None:
            try:
                v = get(key)
            except KeyError:
                return None
            return None if v is None else str(v)

        timeout = look("mbox_lock_timeout")
        lazy = look("mbox_lazy_writes")
        return cls(locking.parse_methods(look("mbox_read_locks"), locking.DEFAULT_READ),
                   locking.parse_methods(look("mbox_write_locks"), locking.DEFAULT_WRITE),
                   _seconds(timeout) if timeout else locking.DEFAULT_TIMEOUT,
                   (lazy or "yes").lower() in ("yes", "true", "1"))


def _seconds(text: str) -> float:
    text = text.strip()
    units = {"s": 1, "secs": 1, "sec": 1, "m": 60, "min": 60, "mins": 60, "h": 3600}
    num = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = text[len(num):].strip()
    try:
        return float(num) * units.get(unit, 1)
    except ValueError:
        return locking.DEFAULT_TIMEOUT


@os_errors_as_storage_errors
class MboxList(MailboxList):
    def __init__(self, location: MailLocation | str, *, home: str | None = None,
                 separator: str | None = None, mail_fsync: str | None = None,
                 settings: MboxSettings | None = None, quota: QuotaPolicy | None = None,
                 special_use: Mapping[str, str] | None = None, create_inbox: bool = True,
                 user: str | None = None) -> None:
        loc = parse_location(location, home) if isinstance(location, str) else location
        if loc.driver != "mbox":
            raise StorageError(f"MboxList cannot serve {loc.driver}: storage", code="SERVERBUG")
        self.loc = loc
        self._names = FsLayout(loc)  # level names on disk: mUTF-7 unless :UTF-8
        self.root = loc.root
        self.inbox_path = loc.inbox or os.path.join(loc.root, "inbox")
        self.separator = separator or "/"
        self.settings = settings or MboxSettings()
        self.fsync = mail_fsync or "optimized"
        self.quota: QuotaPolicy = quota or NoQuota()
        self.special_use = dict(special_use or {})
        self.user = user
        self._marked: set[tuple[str, ...]] = set()
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.file_mode = 0o600
        self.subscriptions_path = os.path.join(loc.control or self.root, SUBSCRIPTIONS)
        #: mbox_lazy_writes: flag changes waiting for a full write sync (None: eager)
        # (beside Dovecot's own mbox indexes, ``.imap``: Dovecot lists any other file in the
        # root as a mailbox, even a dot file, and would lock SQLite's -shm as an mbox)
        self.pending = PendingChanges(
            os.path.join(loc.index or os.path.join(self.root, ".imap"), PENDING_NAME),
            file_mode=self.file_mode) if self.settings.lazy_writes else None
        if create_inbox and not os.path.exists(self.inbox_path):
            try:
                os.makedirs(os.path.dirname(self.inbox_path) or ".", exist_ok=True)
                os.close(os.open(self.inbox_path, os.O_WRONLY | os.O_CREAT, self.file_mode))
            except PermissionError:
                pass  # /var/mail not writable: the MTA creates it with the first mail

    # -- names ------------------------------------------------------------------------
    def _parts(self, name: str) -> tuple[str, ...]:
        name = normalize_inbox(name, self.separator)
        if name.endswith(self.separator) and len(name) > 1:
            name = name[: -len(self.separator)]
        if not name:
            raise InvalidName("Empty mailbox name")
        parts = tuple(name.split(self.separator))
        for p in parts:
            if not p or p in (".", "..") or "/" in p or p.startswith(".") \
                    or any(ord(c) < 32 for c in p) or p.endswith(".lock"):
                raise InvalidName(f"Invalid mailbox name: {name}")
        return parts

    def _encode(self, part: str) -> str:
        return self._names.encode(part)

    def _decode(self, part: str) -> str:
        return self._names.decode(part)

    def _path(self, parts: tuple[str, ...]) -> str:
        if parts == ("INBOX",):
            return self.inbox_path
        return os.path.join(self.root, *(self._encode(p) for p in parts))

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(self._parts(name)))

    # -- list ---------------------------------------------------------------------------
    def _scan(self) -> dict[tuple[str, ...], bool]:
        """Every entry below the root: parts -> is a mailbox file (False: a directory).
        Files written since they were last read go to ``self._marked`` (``\\Marked``)."""
        out: dict[tuple[str, ...], bool] = {}
        self._marked = set()
        inbox_real = os.path.realpath(self.inbox_path)

        def walk(path: str, prefix: tuple[str, ...]) -> None:
            try:
                it = os.scandir(path)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return
            with it:
                for e in it:
                    if e.name.startswith(".") or e.name.endswith(".lock"):
                        continue
                    parts = (*prefix, self._decode(e.name))
                    if e.is_dir():
                        out[parts] = False
                        walk(e.path, parts)
                    elif e.is_file() and os.path.realpath(e.path) != inbox_real:
                        if not prefix and e.name == "inbox" and self.loc.inbox is None:
                            continue
                        out[parts] = True
                        st = e.stat()
                        if st.st_size and int(st.st_atime) < int(st.st_mtime):  # whole seconds
                            self._marked.add(parts)

        walk(self.root, ())
        return out

    def list(self, pattern: str = "*", *, subscribed: bool = False) -> builtins.list[MailboxInfo]:
        match = compile_pattern(pattern, self.separator)
        found = self._scan()
        found[("INBOX",)] = True
        parents = {p[:-1] for p in found if len(p) > 1}
        if subscribed:
            names = self._read_subscriptions()
        else:
            names = sorted(found, key=lambda p: (p != ("INBOX",), p))
        out = []
        for parts in names:
            name = self.separator.join(parts)
            if not match(name):
                continue
            attrs: set[str] = set()
            if subscribed:
                attrs.add("\\Subscribed")
                if parts not in found:
                    attrs.add("\\NonExistent")
            if parts in found:
                if parts == ("INBOX",):
                    attrs.add("\\HasChildren" if parts in parents else "\\HasNoChildren")
                elif found[parts]:
                    attrs.add("\\NoInferiors")
                    if parts in self._marked:
                        attrs.add("\\Marked")  # the classic mbox rule: mtime > atime
                else:
                    attrs.update(("\\Noselect", "\\HasChildren" if parts in parents
                                  else "\\HasNoChildren"))
            use = self.special_use.get(name)
            if use:
                attrs.update(use.split())
            out.append(MailboxInfo(name, frozenset(attrs)))
        return out

    # -- create / delete / rename -------------------------------------------------------
    def create(self, name: str) -> None:
        directory = name.endswith(self.separator)
        parts = self._parts(name)
        path = self._path(parts)
        if os.path.exists(path) or parts == ("INBOX",):
            raise MailboxExists(name)
        if directory:
            os.makedirs(path, mode=0o700)
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode))
        except FileExistsError:
            raise MailboxExists(name) from None

    def delete(self, name: str) -> None:
        parts = self._parts(name)
        if parts == ("INBOX",):
            raise StorageError("INBOX can't be deleted.", code="CANNOT")
        path = self._path(parts)
        if os.path.isdir(path):
            entries = [e for e in os.listdir(path) if not e.startswith(".")]
            if entries:
                raise StorageError("Mailbox has children, delete them first", code="INUSE")
            for e in os.listdir(path):
                full = os.path.join(path, e)
                if os.path.isdir(full):
                    shutil.rmtree(full, ignore_errors=True)
                else:
                    os.unlink(full)
            os.rmdir(path)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise MailboxNotFound(name) from None

    def rename(self, old: str, new: str) -> None:
        a, b = self._parts(old), self._parts(new)
        if a == ("INBOX",):
            raise StorageError("Renaming INBOX isn't supported.", code="CANNOT")
        src, dst = self._path(a), self._path(b)
        if not os.path.exists(src):
            raise MailboxNotFound(old)
        if os.path.exists(dst) or b == ("INBOX",):
            raise MailboxExists(new)
        os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
        os.rename(src, dst)

    # -- subscriptions ------------------------------------------------------------------
    def _read_subscriptions(self) -> builtins.list[tuple[str, ...]]:
        try:
            with open(self.subscriptions_path, "rb") as f:
                return subsfile.parse(f.read(), "/")
        except FileNotFoundError:
            return []

    def _write_subscriptions(self, names: builtins.list[tuple[str, ...]]) -> None:
        replace_file(self.subscriptions_path, subsfile.format(names), mode=self.file_mode,
                     fsync=self.fsync != "never")

    def subscribe(self, name: str) -> None:
        parts = self._parts(name)
        if not os.path.exists(self._path(parts)):
            raise MailboxNotFound(name)
        subs = self._read_subscriptions()
        if parts not in subs:
            self._write_subscriptions([*subs, parts])

    def unsubscribe(self, name: str) -> None:
        parts = self._parts(name)
        subs = self._read_subscriptions()
        if parts not in subs:
            raise StorageError(f"Mailbox isn't subscribed: {name}", code="NONEXISTENT")
        self._write_subscriptions([p for p in subs if p != parts])

    def subscriptions(self) -> builtins.list[str]:
        return [self.separator.join(p) for p in self._read_subscriptions()]

    def open(self, name: str, *, readonly: bool = False) -> MboxMailbox:
        parts = self._parts(name)
        return MboxMailbox(self, self.separator.join(parts), self._path(parts), readonly)

    def open_for_append(self, name: str) -> MboxMailbox:
        """For LMTP/LDA: the append reads the file under its lock anyway; opening without a
        view leaves the \\Recent of the mail already there to the user's next session."""
        parts = self._parts(name)
        return MboxMailbox(self, self.separator.join(parts), self._path(parts), False,
                           view=False)

    def close(self) -> None:
        if self.pending is not None:
            self.pending.close()
