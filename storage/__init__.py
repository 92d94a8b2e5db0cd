"""Mail storage: one interface for the protocol code; Maildir in Dovecot's formats behind it.

Use::

    from cote.storage import open_storage
    mailboxes = open_storage("maildir:~/Maildir", home="/home/u")  # a MailboxList
    mailboxes.list("*")                                    # [MailboxInfo(name, attributes)]
    with mailboxes.open("INBOX") as box:                   # a Mailbox: this session's view
        box.uids, box.flags, box.modseqs                   # columns, index = seq - 1
        changes = box.sync()                               # SyncChanges(expunged, new, …)
        uid = box.append(b"…", ["\\\\Seen"])
        box.store([uid], "+", ["$Forwarded"], unchangedsince=None)
        box.expunge()

See ``docs/storage.md`` for the whole interface, the on-disk formats and the extension points
(mbox backend, namespaces, quota).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cote.storage.api import (
    AppendTransaction,
    ChangeWatcher,
    Mailbox,
    MailboxInfo,
    MailboxList,
    MailboxStatus,
    MessageDetails,
    NoQuota,
    QuotaPolicy,
    StoreResult,
    SyncChanges,
)
from cote.storage.errors import (
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    MessageGone,
    QuotaExceeded,
    ReadOnly,
    StorageError,
    from_os_error,
)
from cote.storage.location import MailLocation, parse_location
from cote.storage.maildir.list import MaildirList
from cote.storage.maildir.settings import MaildirSettings
from cote.storage.mbox.list import MboxList, MboxSettings

__all__ = [
    "AppendTransaction",
    "ChangeWatcher",
    "InvalidName",
    "MailLocation",
    "Mailbox",
    "MailboxExists",
    "MailboxInfo",
    "MailboxList",
    "MailboxNotFound",
    "MailboxStatus",
    "MaildirList",
    "MaildirSettings",
    "MboxList",
    "MboxSettings",
    "MessageDetails",
    "MessageGone",
    "NoQuota",
    "QuotaExceeded",
    "QuotaPolicy",
    "ReadOnly",
    "StorageError",
    "StoreResult",
    "SyncChanges",
    "open_storage",
    "parse_location",
]


def open_storage(location: str | MailLocation, *, home: str | None = None,
                 separator: str | None = None, mail_fsync: str | None = None,
                 config: Callable[[str], object] | None = None,
                 quota: QuotaPolicy | None = None,
                 special_use: Mapping[str, str] | None = None,
                 create_inbox: bool = True, user: str | None = None) -> MailboxList:
    """The mailbox list for a ``mail_location`` (``%`` variables already expanded).

    ``config`` looks up Dovecot settings by name (``mail_fsync``,
    ``maildir_copy_with_hardlinks``, ``maildir_very_dirty_syncs``, ``maildir_empty_new``,
    ``mail_max_lock_timeout``, and for mbox ``mbox_read_locks``, ``mbox_write_locks``,
    ``mbox_lock_timeout``, ``mbox_lazy_writes``); ``mail_fsync`` overrides the looked-up
    value. ``user`` names the sender of mbox ``From_`` lines (``user@host``).
    """
    loc = parse_location(location, home) if isinstance(location, str) else location
    if loc.driver == "mbox":
        try:
            return MboxList(loc, separator=separator, mail_fsync=mail_fsync,
                            settings=MboxSettings.from_config(config) if config else None,
                            quota=quota, special_use=special_use, create_inbox=create_inbox,
                            user=user)
        except OSError as e:
            raise from_os_error(e) from e
    if loc.driver != "maildir":
        raise StorageError(f"mail storage {loc.driver!r} is not available yet",
                           code="SERVERBUG")
    settings = MaildirSettings.from_config(config) if config else MaildirSettings()
    try:
        return MaildirList(loc, separator=separator, mail_fsync=mail_fsync, settings=settings,
                           quota=quota, special_use=special_use, create_inbox=create_inbox)
    except OSError as e:
        raise from_os_error(e) from e
