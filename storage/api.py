"""The storage interface the protocol code (IMAP, POP3, LMTP) uses: no paths, no formats.

Two layers, as in Dovecot's lib-storage: a :class:`MailboxList` knows names, hierarchy,
subscriptions and where things live; a :class:`Mailbox` knows messages. Maildir is one backend
(``cote.storage.maildir``); mbox plugs in behind the same classes. Names are Unicode ``str``
with the list's hierarchy separator (the IMAP layer converts to and from modified UTF-7).

A :class:`Mailbox` is one session's *view*: its message columns (``uids``, ``flags``,
``modseqs``) change only inside :meth:`Mailbox.sync`, which reports what changed so the
protocol layer can send EXISTS/EXPUNGE/FETCH when the protocol allows it.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import BinaryIO, NamedTuple, Protocol

from cote.storage import flags as F


class MailboxInfo(NamedTuple):
    """One LIST answer row: the name and its attributes (``\\HasNoChildren``, ``\\Sent`` …)."""

    name: str
    attributes: frozenset[str]


class MailboxStatus(NamedTuple):
    messages: int
    recent: int
    uidnext: int
    uidvalidity: int
    unseen: int
    highestmodseq: int
    size: int  # sum of RFC822.SIZE (STATUS SIZE, RFC 8438)
    deleted: int  # messages with \Deleted (STATUS DELETED, RFC 9051)


class SyncChanges(NamedTuple):
    """What a :meth:`Mailbox.sync` changed in this view.

    ``expunged``: UIDs removed, ascending. ``expunged_seqs``: their sequence numbers in the
    *previous* view, ascending: send ``* n EXPUNGE`` for them from the highest down (each
    number stays valid), or ascending after subtracting how many were sent before.
    ``new``: how many messages were appended at the end of the view.
    ``flags_changed``: UIDs (still present) whose flags were changed (also when a later
    change restored them: Dovecot reports those too).
    ``uidvalidity_changed``: the mailbox was recreated; the session must reselect.
    """

    expunged: list[int]
    new: int
    flags_changed: list[int]
    uidvalidity_changed: bool = False
    expunged_seqs: tuple[int, ...] = ()


class MessageDetails(NamedTuple):
    uid: int
    flags: int
    modseq: int
    internal_date: float  # seconds since the epoch
    size: int  # physical octets on disk
    vsize: int  # RFC822.SIZE: octets with CRLF line ends


class StoreResult(NamedTuple):
    changed: list[int]  # UIDs whose flags changed (their new flags/modseq are in the view)
    modified: list[int]  # UIDs refused by UNCHANGEDSINCE (RFC 7162 [MODIFIED …])


class QuotaPolicy(Protocol):
    """Quota hook: ``check`` raises :class:`~cote.storage.errors.QuotaExceeded` to refuse."""

    def check(self, mailbox: str, add_bytes: int, add_count: int) -> None: ...

    def changed(self, mailbox: str, delta_bytes: int, delta_count: int) -> None: ...


class NoQuota:
    def check(self, mailbox: str, add_bytes: int, add_count: int) -> None:
        return None

    def changed(self, mailbox: str, delta_bytes: int, delta_count: int) -> None:
        return None


class ChangeWatcher(ABC):
    """Wakes a session when another process changes the mailbox (IDLE, NOTIFY).

    ``fileno()`` is readable after a change (use it with ``loop.add_reader``); ``wait`` blocks;
    ``drain`` clears the pending wake-ups. Call :meth:`Mailbox.sync` afterwards.
    """

    @abstractmethod
    def fileno(self) -> int: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> bool: ...

    @abstractmethod
    def drain(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class AppendTransaction(ABC):
    """A multi-append: messages are written as they come, then made visible all at once."""

    @abstractmethod
    def add(self, data: bytes | BinaryIO, flags: Iterable[str] = (),
            internal_date: float | None = None) -> None: ...

    @abstractmethod
    def commit(self) -> list[int]:
        """Make every added message visible; returns their UIDs (for APPENDUID)."""

    @abstractmethod
    def rollback(self) -> None: ...

    def __enter__(self) -> AppendTransaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.rollback()


class Mailbox(ABC):
    """A selected (or examined) mailbox: one session's view of its messages."""

    name: str
    readonly: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    #: message columns, index = sequence number - 1
    uids: array[int]
    flags: list[int]
    modseqs: array[int]
    #: keyword table: keyword ``i`` is flag bit ``cote.storage.flags.keyword_bit(i)``
    keywords: list[str]

    def __len__(self) -> int:
        return len(self.uids)

    # -- names of flag bits -------------------------------------------------------------
    def flag_names(self, bits: int) -> list[str]:
        names = F.system_names(bits)
        kws = self.keywords
        names.extend(kws[i] for i in F.keyword_indexes(bits) if i < len(kws))
        return names

    def seq_of(self, uid: int) -> int | None:
        """Sequence number (1-based) of a UID in this view, None when absent."""
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def first_unseen(self) -> int | None:
        """Sequence number of the view's first message without \\Seen (SELECT's ``[UNSEEN
        n]``), None when all are seen. A backend may know it without walking the flags."""
        for i, bits in enumerate(self.flags):
            if not bits & F.SEEN:
                return i + 1
        return None

    # -- state --------------------------------------------------------------------------
    @abstractmethod
    def sync(self) -> SyncChanges: ...

    @abstractmethod
    def status(self) -> MailboxStatus: ...

    @abstractmethod
    def recent_uids(self) -> list[int]: ...

    def peek_recent_uids(self) -> list[int]:
        """The view's messages no session has claimed as \\Recent yet, claiming nothing: what
        a read-only view (EXAMINE) shows as \\Recent, leaving the flag to the next session
        that selects the mailbox (RFC 3501 section 2.3.2)."""
        return self.recent_uids()

    def refresh_flags(self) -> list[int]:
        """Take in the flags and modseqs other sessions changed, without a sync: no message
        comes or goes, so sequence numbers stay as the client knows them (IMAP FETCH and
        STORE work on current flags but may not announce expunges). Returns the UIDs whose
        flags changed; the next :meth:`sync` does not report them again. A backend that
        cannot tell cheaply returns [] and leaves the changes to the next sync."""
        return []

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged after ``modseq``, ascending (QRESYNC's ``VANISHED (EARLIER)``);
        [] from a backend that keeps no expunge history (clients then resync by UID)."""
        return []

    @abstractmethod
    def details(self, uids: Sequence[int]) -> list[MessageDetails]: ...

    def pop3_uidls(self, uids: Sequence[int]) -> dict[int, str]:
        """UIDLs kept from a migration (Dovecot's ``P`` uidlist field); POP3 formats the rest
        with ``pop3_uidl_format``."""
        return {}

    # -- message bytes ------------------------------------------------------------------
    @abstractmethod
    def open_message(self, uid: int) -> BinaryIO: ...

    def read_message(self, uid: int, start: int = 0, length: int | None = None) -> bytes:
        with self.open_message(uid) as f:
            if start:
                f.seek(start)
            return f.read() if length is None else f.read(length)

    # -- changes ------------------------------------------------------------------------
    @abstractmethod
    def begin_append(self) -> AppendTransaction: ...

    def append(self, data: bytes | BinaryIO, flags: Iterable[str] = (),
               internal_date: float | None = None) -> int:
        with self.begin_append() as tx:
            tx.add(data, flags, internal_date)
            return tx.commit()[0]

    @abstractmethod
    def store(self, uids: Sequence[int], mode: str, flags: Iterable[str],
              unchangedsince: int | None = None) -> StoreResult:
        """``mode`` is ``"+"`` (add), ``"-"`` (remove) or ``"="`` (replace)."""

    @abstractmethod
    def expunge(self, uids: Sequence[int] | None = None) -> list[int]:
        """Expunge ``\\Deleted`` messages (only among ``uids`` when given); returns UIDs."""

    @abstractmethod
    def copy(self, uids: Sequence[int], dest: Mailbox) -> list[tuple[int, int]]:
        """Copy to ``dest``; returns ``(source uid, new uid)`` pairs (for COPYUID)."""

    #: set on the destination while a MOVE copies into it: quota is not checked for a move
    #: (Dovecot's rule inside one quota root: nothing is added)
    moving_in: bool = False

    def move(self, uids: Sequence[int], dest: Mailbox) -> list[tuple[int, int]]:
        dest.moving_in = True
        try:
            pairs = self.copy(uids, dest)
        finally:
            dest.moving_in = False
        self._expunge_uids([src for src, _ in pairs])
        return pairs

    @abstractmethod
    def _expunge_uids(self, uids: Sequence[int]) -> list[int]: ...

    # -- cache for the IMAP layer (ENVELOPE, BODYSTRUCTURE, sort keys) ------------------
    @abstractmethod
    def cache_get(self, uid: int, field: str) -> bytes | None: ...

    @abstractmethod
    def cache_put(self, uid: int, field: str, value: bytes) -> None: ...

    def will_read(self, uids: Sequence[int], length: int) -> None:  # noqa: B027
        """A hint that the first ``length`` octets of these messages are read next: a backend
        with one file per message asks the kernel for them all at once (the disk then works
        on many reads together instead of one after the other). Nothing by default."""

    def cache_get_many(self, uids: Sequence[int], field: str) -> dict[int, bytes]:
        """``uid -> value`` of ``cache_get`` for the UIDs that have one (a backend with an
        index answers in one query)."""
        out: dict[int, bytes] = {}
        for uid in uids:
            value = self.cache_get(uid, field)
            if value is not None:
                out[uid] = value
        return out

    def cache_put_many(self, entries: Iterable[tuple[int, str, bytes]]) -> None:
        """Several ``cache_put`` at once (a backend with transactions makes it one)."""
        for uid, field, value in entries:
            self.cache_put(uid, field, value)

    @abstractmethod
    def watch(self) -> ChangeWatcher: ...

    def flush(self) -> None:
        """Write what the backend keeps pending into the mailbox now (IMAP CHECK: mbox with
        ``mbox_lazy_writes`` writes its pending flag changes); ``close`` does it too."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MailboxList(ABC):
    """A user's mailbox names, hierarchy, subscriptions; opens :class:`Mailbox` views."""

    separator: str

    @abstractmethod
    def list(self, pattern: str = "*", *, subscribed: bool = False) -> list[MailboxInfo]:
        """Mailboxes matching an IMAP pattern (``*`` any, ``%`` one level).

        With ``subscribed``: the subscribed names matching (``\\Subscribed``, and
        ``\\NonExistent`` for those that do not exist), as LSUB / LIST (SUBSCRIBED) need.
        """

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def create(self, name: str) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def rename(self, old: str, new: str) -> None:
        """Rename a mailbox and all its children."""

    @abstractmethod
    def subscribe(self, name: str) -> None: ...

    @abstractmethod
    def unsubscribe(self, name: str) -> None: ...

    @abstractmethod
    def subscriptions(self) -> builtins.list[str]: ...

    @abstractmethod
    def open(self, name: str, *, readonly: bool = False) -> Mailbox: ...

    def open_for_append(self, name: str) -> Mailbox:
        """A mailbox to deliver into (LMTP, LDA): only ``begin_append``/``append`` may be used,
        and a backend may skip building the view (Maildir does: Dovecot's deliveries do not
        scan the mailbox either). The default is a normal open."""
        return self.open(name)

    def open_for_saving(self, name: str) -> Mailbox:
        """A view an IMAP session APPENDs or COPYs into: it may save and tells its
        uidvalidity and uidnext, but it does not claim the mailbox's \\Recent messages (only
        SELECT does, as in Dovecot). The default opens read-only and then allows saving."""
        box = self.open(name, readonly=True)
        box.readonly = False
        return box

    def status(self, name: str) -> MailboxStatus:
        with self.open(name, readonly=True) as box:
            return box.status()

    @abstractmethod
    def close(self) -> None: ...
