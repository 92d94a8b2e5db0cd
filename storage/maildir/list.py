"""The Maildir mailbox list: names, hierarchy, subscriptions; opens Maildir mailboxes.

Built from a ``mail_location`` (``cote.storage.location``), a list layout (Maildir++ or fs)
and cote's per-user index. Quota (``QuotaPolicy``) is consulted on append/copy/move.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import replace

from cote.storage import subscriptions as subsfile
from cote.storage.api import MailboxInfo, MailboxList, MailboxStatus, NoQuota, QuotaPolicy
from cote.storage.dotlock import replace_file
from cote.storage.errors import (
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    StorageError,
    os_errors_as_storage_errors,
)
from cote.storage.index import NAME as INDEX_NAME
from cote.storage.index import Index
from cote.storage.layout import Layout, Parts, layout_for
from cote.storage.location import MailLocation, parse_location
from cote.storage.maildir import uidlist as ulfile
from cote.storage.maildir.mailbox import MaildirMailbox
from cote.storage.maildir.settings import MaildirSettings
from cote.storage.maildir.uidvalidity import next_uidvalidity
from cote.storage.pattern import compile_pattern, normalize_inbox
from cote.storage.private import PrivateFlags

log = logging.getLogger("cote.storage")


def create_gid(root: str) -> int:
    """The group new files under ``root`` are given, by Dovecot's rule
    (``mailbox_list_get_permissions``): -1 (keep the process's) when the root is setgid (the
    kernel inherits it), when group and other have the same rights, or when the process is
    already in that group; the root's group otherwise."""
    st = os.stat(root)
    if st.st_mode & 0o2000 or (st.st_mode & 0o070) >> 3 == st.st_mode & 0o007 \
            or st.st_gid == os.getegid():
        return -1
    return st.st_gid

#: index ``meta`` keys of deleted Maildir++ folders that still have children (see ``delete``)
_DELETED_PARENT = "deleted-parent:"


@os_errors_as_storage_errors
class MaildirList(MailboxList):
    def __init__(self, location: MailLocation | str, *, home: str | None = None,
                 separator: str | None = None, mail_fsync: str | None = None,
                 settings: MaildirSettings | None = None,
                 quota: QuotaPolicy | None = None,
                 special_use: Mapping[str, str] | None = None,
                 create_inbox: bool = True) -> None:
        loc = parse_location(location, home) if isinstance(location, str) else location
        if loc.driver != "maildir":
            raise StorageError(f"MaildirList cannot serve {loc.driver}: storage", code="SERVERBUG")
        settings = settings or MaildirSettings()
        if mail_fsync is not None:
            settings = replace(settings, fsync=mail_fsync)
        self.settings = settings
        self.loc = loc
        self.layout: Layout = layout_for(loc)
        self.separator = separator or self.layout.default_separator
        self.fsync = settings.fsync
        self.quota: QuotaPolicy = quota or NoQuota()
        self.special_use = dict(special_use or {})
        self.create_inbox = create_inbox
        os.makedirs(loc.root, mode=0o700, exist_ok=True)
        # as Dovecot: everything below the root gets the root's permissions (setgid
        # included), files without the x bits, whatever the process umask
        mode = os.stat(loc.root).st_mode & 0o2777
        self.dir_mode = mode if mode & 0o777 else 0o700
        self.file_mode = (mode & 0o666) or 0o600
        self.uidvalidity_dir = loc.control_root
        self.subscriptions_path = os.path.join(loc.control_root, subsfile.NAME)
        try:
            self.makedirs(loc.index_root)
            self.index = Index(os.path.join(loc.index_root, INDEX_NAME),
                               file_mode=self.file_mode, dir_mode=self.dir_mode,
                               gid=create_gid(loc.root))
        except (OSError, sqlite3.Error) as e:
            # like Dovecot with an unwritable index dir: keep the index in memory
            log.warning("index %s not usable (%s): using an in-memory index", loc.index_root, e)
            self.index = Index(":memory:")
        pvt = loc.extra.get("INDEXPVT")
        #: INDEXPVT: the accessing user's private \\Seen (shared and public namespaces)
        self.private = PrivateFlags(os.path.normpath(pvt)) if pvt else None
        if create_inbox:
            self._make_mail_dirs(("INBOX",))

    # -- names --------------------------------------------------------------------------
    def _parts(self, name: str) -> Parts:
        name = normalize_inbox(name, self.separator)
        if name.endswith(self.separator) and len(name) > 1:
            name = name[: -len(self.separator)]
        if not name:
            raise InvalidName("Empty mailbox name")
        parts = tuple(name.split(self.separator)) if self.separator else (name,)
        self.layout.validate(parts)
        return parts

    def _name(self, parts: Parts) -> str:
        return self.separator.join(parts)

    def _existing(self) -> dict[Parts, bool]:
        found = self.layout.scan()
        inbox_dir = self.layout.mail_dir(("INBOX",))
        if os.path.isdir(os.path.join(inbox_dir, "cur")):
            found[("INBOX",)] = True
        return found

    def _selectable(self, parts: Parts) -> bool:
        """Whether a mailbox exists (a Maildir++ folder dir, or a dir with ``cur/``)."""
        if parts == ("INBOX",) or self.loc.layout == "fs":
            return os.path.isdir(os.path.join(self.layout.mail_dir(parts), "cur"))
        return os.path.isdir(self.layout.mailbox_dir(parts))

    def exists(self, name: str) -> bool:
        return self._selectable(self._parts(name))

    # -- list ---------------------------------------------------------------------------
    def list(self, pattern: str = "*", *, subscribed: bool = False) -> builtins.list[MailboxInfo]:
        match = compile_pattern(pattern, self.separator)
        existing = self._existing()
        known: dict[Parts, bool | None] = dict(existing)  # None: only a parent of others
        for parts in existing:
            for i in range(1, len(parts)):
                known.setdefault(parts[:i], None)
        parents = {parts[:-1] for parts in known if len(parts) > 1}
        deleted_parents = self._deleted_parents()
        subs: set[Parts] = set(self._read_subscriptions()) if subscribed else set()
        if subscribed:
            names: builtins.list[Parts] = [*subs]
        else:
            names = [*known]
        out: list[MailboxInfo] = []
        for parts in sorted(names, key=lambda p: (p != ("INBOX",), p)):
            name = self._name(parts)
            if not match(name):
                continue
            attrs: set[str] = set()
            state = known.get(parts)
            if subscribed:
                attrs.add("\\Subscribed")
                if parts not in known:
                    attrs.add("\\NonExistent")
            if parts in known and not state and parts not in deleted_parents:
                attrs.add("\\Noselect")
            if parts in known:
                attrs.add("\\HasChildren" if parts in parents else "\\HasNoChildren")
            use = self.special_use.get(name)
            if use:
                attrs.update(use.split())
            out.append(MailboxInfo(name, frozenset(attrs)))
        return out

    # -- deleted parents ----------------------------------------------------------------
    # Dovecot's DELETE of a Maildir++ folder with children removes its directory, mail and
    # all, but its mailbox list index keeps the folder's record as it was: LIST goes on
    # showing "(\\HasChildren) a" without \\Noselect (in later sessions too) although
    # SELECT, STATUS and DELETE of "a" answer that it does not exist. The record goes when
    # the last child does (a new child then brings "a" back as \\Noselect) or "a" is
    # created again. cote keeps such names in its index to list them the same way.
    def _deleted_parents(self) -> set[Parts]:
        if self.loc.layout != "maildir++":
            return set()
        rows = self.index.db.execute("SELECT key FROM meta WHERE substr(key, 1, ?) = ?",
                                     (len(_DELETED_PARENT), _DELETED_PARENT)).fetchall()
        return {tuple(key[len(_DELETED_PARENT):].split("\t")) for (key,) in rows}

    def _set_deleted_parent(self, parts: Parts, deleted: bool) -> None:
        key = _DELETED_PARENT + "\t".join(parts)  # validate() forbids control characters
        with self.index.write() as db:
            if deleted:
                db.execute("INSERT OR REPLACE INTO meta VALUES(?, 1)", (key,))
            else:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def _forget_childless_deleted_parents(self) -> None:
        deleted = self._deleted_parents()
        if not deleted:
            return
        existing = self._existing()
        for parts in deleted:
            if not any(p[: len(parts)] == parts and p != parts for p in existing):
                self._set_deleted_parent(parts, False)

    # -- create / delete / rename -------------------------------------------------------
    def makedirs(self, path: str) -> None:
        """``os.makedirs`` giving every directory it creates (parents too) ``dir_mode``:
        ``os.makedirs`` gives parents 0777 and both are cut by the umask."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent and parent != path:
            self.makedirs(parent)
        try:
            os.mkdir(path, self.dir_mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            return
        os.chmod(path, self.dir_mode)

    def create_file(self, path: str, flags: int) -> int:
        """``os.open(path, O_CREAT | flags)`` with ``file_mode`` whatever the umask."""
        fd = os.open(path, os.O_CREAT | flags, self.file_mode)
        try:
            os.fchmod(fd, self.file_mode)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _make_mail_dirs(self, parts: Parts) -> None:
        d = self.layout.mail_dir(parts)
        for sub in ("cur", "new", "tmp"):
            self.makedirs(os.path.join(d, sub))
        control = self.layout.control_dir(parts)
        if control != d:
            self.makedirs(control)
        if self.loc.layout == "maildir++" and parts != ("INBOX",):
            folder_file = os.path.join(d, "maildirfolder")
            if not os.path.exists(folder_file):
                os.close(self.create_file(folder_file, os.O_WRONLY))

    def create(self, name: str) -> None:
        parts = self._parts(name)
        if self._selectable(parts):
            raise MailboxExists(name)
        self._make_mail_dirs(parts)
        if parts in self._deleted_parents():
            self._set_deleted_parent(parts, False)
        # a new mailbox gets its UIDVALIDITY at once, as Dovecot's CREATE does
        uidlist_path = os.path.join(self.layout.control_dir(parts), ulfile.NAME)
        if not os.path.exists(uidlist_path):
            ul = ulfile.Uidlist(uidvalidity=next_uidvalidity(self.uidvalidity_dir, self.file_mode),
                                guid=ulfile.new_guid())
            tmp = uidlist_path + ".tmp"
            fd = self.create_file(tmp, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, ulfile.format(ul))
                if self.fsync != "never":
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, uidlist_path)

    def delete(self, name: str) -> None:
        parts = self._parts(name)
        if parts == ("INBOX",):
            raise StorageError("INBOX can't be deleted.", code="CANNOT")
        existing = self._existing()
        if parts not in existing:
            raise MailboxNotFound(name)
        has_children = any(p[: len(parts)] == parts and p != parts for p in existing)
        mbox_dir = self.layout.mailbox_dir(parts)
        control = self.layout.control_dir(parts)
        if self.loc.layout == "fs" and has_children:
            if not existing[parts]:
                raise StorageError("Mailbox has children, delete them first", code="INUSE")
            # keep the directory as a \Noselect parent; drop the mail
            mail = self.layout.mail_dir(parts)
            for sub in ("cur", "new", "tmp"):
                shutil.rmtree(os.path.join(mail, sub), ignore_errors=True)
            for f in (ulfile.NAME, "dovecot-keywords"):
                try:
                    os.unlink(os.path.join(control, f))
                except FileNotFoundError:
                    pass
        else:
            trash = os.path.join(os.path.dirname(mbox_dir), "..DOVECOT-TRASHED")
            shutil.rmtree(trash, ignore_errors=True)
            os.rename(mbox_dir, trash)
            shutil.rmtree(trash, ignore_errors=True)
            if control != self.layout.mail_dir(parts):
                shutil.rmtree(control, ignore_errors=True)
            if has_children:
                self._set_deleted_parent(parts, True)
        self.index.forget(self.layout.relative(parts), exact=self.layout.relative(parts))
        self._forget_childless_deleted_parents()

    def rename(self, old: str, new: str) -> None:
        old_parts, new_parts = self._parts(old), self._parts(new)
        if old_parts == ("INBOX",):
            raise StorageError("Renaming INBOX isn't supported", code="CANNOT")
        existing = self._existing()
        if not any(p[: len(old_parts)] == old_parts for p in existing):
            raise MailboxNotFound(old)
        if new_parts in existing:
            raise MailboxExists(new)
        if new_parts[: len(old_parts)] == old_parts:
            raise StorageError("Can't rename mailbox under itself.", code="CANNOT")
        pairs = self.layout.rename_map(old_parts, new_parts, existing)
        for src, dst in pairs:
            self.makedirs(os.path.dirname(dst))
            os.rename(src, dst)
        if self.loc.control is not None:
            croot = self.loc.control
            for src, dst in pairs:
                csrc = os.path.join(croot, os.path.relpath(src, self.loc.root))
                cdst = os.path.join(croot, os.path.relpath(dst, self.loc.root))
                if os.path.exists(csrc):
                    self.makedirs(os.path.dirname(cdst))
                    os.rename(csrc, cdst)
        rel = self.layout.relative(old_parts)
        prefix = rel + ("." if self.loc.layout == "maildir++" else "/")
        self.index.forget(prefix, exact=rel)
        self._forget_childless_deleted_parents()

    # -- subscriptions ------------------------------------------------------------------
    def _read_subscriptions(self) -> builtins.list[Parts]:
        try:
            with open(self.subscriptions_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out: builtins.list[Parts] = []
        for disk_parts in subsfile.parse(data, self.separator):
            out.append(tuple(self.layout.decode(p) for p in disk_parts))
        return out

    def _write_subscriptions(self, names: builtins.list[Parts]) -> None:
        disk = [tuple(self.layout.encode(p) for p in parts) for parts in names]
        replace_file(self.subscriptions_path, subsfile.format(disk), mode=self.file_mode,
                     fsync=self.fsync != "never")

    def subscribe(self, name: str) -> None:
        parts = self._parts(name)
        if parts not in self._existing():
            raise MailboxNotFound(name)
        subs = self._read_subscriptions()
        if parts not in subs:
            subs.append(parts)
            self._write_subscriptions(subs)

    def unsubscribe(self, name: str) -> None:
        parts = self._parts(name)
        subs = self._read_subscriptions()
        if parts in subs:
            subs.remove(parts)
            self._write_subscriptions(subs)

    def subscriptions(self) -> builtins.list[str]:
        return [self._name(p) for p in self._read_subscriptions()]

    # -- mailboxes ----------------------------------------------------------------------
    def open(self, name: str, *, readonly: bool = False) -> MaildirMailbox:
        return self._open(name, readonly=readonly, sync=True)

    def status(self, name: str) -> MailboxStatus:
        """The index brought up to date with the disk, then its counters: no view is built
        (a STATUS of an unchanged mailbox is a few stat calls and two index rows)."""
        box = self._open(name, readonly=True, sync=False)
        try:
            box.sync_disk()
            return box.status()
        finally:
            box.close()

    def open_for_append(self, name: str) -> MaildirMailbox:
        """No view is built: the append needs only the uidlist (read under its lock), and
        the next session's sync picks the new message up."""
        return self._open(name, readonly=False, sync=False)

    def open_for_saving(self, name: str) -> MaildirMailbox:
        return self._open(name, readonly=False, sync=True, claim_recent=False)

    def _open(self, name: str, *, readonly: bool, sync: bool,
              claim_recent: bool = True) -> MaildirMailbox:
        parts = self._parts(name)
        if not self._selectable(parts):
            if parts != ("INBOX",) or not self.create_inbox:
                raise MailboxNotFound(name)
            self._make_mail_dirs(parts)
        elif not os.path.isdir(os.path.join(self.layout.mail_dir(parts), "tmp")):
            self._make_mail_dirs(parts)  # a folder someone made without cur/new/tmp
        return MaildirMailbox(self, self._name(parts), parts, readonly, sync=sync,
                              claim_recent=claim_recent)

    def close(self) -> None:
        self.index.close()
        if self.private is not None:
            self.private.close()
