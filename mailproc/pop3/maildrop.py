"""A user's POP3 maildrop: the INBOX as POP3 sees it, and the UPDATE state's commit.

POP3 numbers the messages of INBOX as they were at login; sizes are RFC822.SIZE (CRLF), or
with ``pop3_fast_size_lookups`` what the file name tells (W=, else S=). UIDLs are computed when
the client asks, in Dovecot's order of preference: a saved ``P`` field, the X-UIDL header
(``pop3_reuse_xuidl``), ``pop3_uidl_format``. At QUIT the deletions become expunges (or a flag,
with ``pop3_deleted_flag``) and RETRieved messages get ``\\Seen`` — in one step, after the client
asked for it, never on a dropped connection. UIDLs sent are saved (``pop3_save_uidl``) at the
end of any session, QUIT or not, when Dovecot writes them (not while the session idles).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from types import TracebackType
from typing import Any, BinaryIO

from cote.config import Config
from cote.mailproc.pop3.session import Pop3Session, UidlError
from cote.storage import Mailbox
from cote.storage import flags as F
from cote.storage.dotlock import Dotlock, LockTimeout
from cote.storage.errors import MessageGone
from cote.storage.mbox.mailbox import MboxMailbox
from cote.variables import Template, VariableError, cached_template

DEFAULT_UIDL_FORMAT = "%08Xu%08Xv"
DEFAULT_LOGOUT_FORMAT = "top=%t/%p, retr=%r/%b, del=%d/%m, size=%s"
# pop3_uidl_format variables (Dovecot's pop3_get_uid): short and long names.
UIDL_VARIABLES = {"u": "uid", "v": "uidvalidity", "m": "md5", "f": "filename", "g": "guid"}
# Dovecot's POP3 session lock: in the INBOX namespace's index root, held for the session,
# waited for 10 s, stale after 5 minutes (or at once when its process is gone).
SESSION_LOCK = "dovecot-pop3-session"
SESSION_LOCK_WAIT = 10.0
SESSION_LOCK_STALE = 300.0
XUIDL_HEADER_MAX = 1 << 20  # a header longer than this is not searched for X-UIDL


class UidlFormatError(ValueError):
    """pop3_uidl_format names a variable Dovecot does not know."""


class SessionLocked(Exception):
    """``pop3_lock_session``: another POP3 session holds this maildrop."""


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    uidl_format: str = DEFAULT_UIDL_FORMAT
    delete_type: str = "default"  # default | expunge | flag
    deleted_flag: str = ""
    no_flag_updates: bool = False
    enable_last: bool = False
    logout_format: str = DEFAULT_LOGOUT_FORMAT
    workarounds: frozenset[str] = frozenset()  # pop3_client_workarounds
    lock_session: bool = False
    save_uidl: bool = False
    reuse_xuidl: bool = False
    fast_size_lookups: bool = False
    uidl_duplicates: str = "allow"  # allow | rename

    @property
    def all_uidls_at_once(self) -> bool:
        """Dovecot computes every UIDL at the first UIDL command when the logout line needs
        their hashes (%u, %{uidl_change}) or duplicates are renamed."""
        fmt = self.logout_format.replace("%%", "")
        return self.uidl_duplicates != "allow" or "%u" in fmt or "%{uidl_change}" in fmt

    @classmethod
    def from_config(cls, cfg: Config) -> Pop3Settings:
        view = cfg.lookup(protocol="pop3")
        return cls(
            uidl_format=str(view.get("pop3_uidl_format")),
            delete_type=str(view.get("pop3_delete_type")),
            deleted_flag=str(view.get("pop3_deleted_flag")),
            no_flag_updates=bool(view.get("pop3_no_flag_updates")),
            enable_last=bool(view.get("pop3_enable_last")),
            logout_format=str(view.get("pop3_logout_format")),
            workarounds=frozenset(str(view.get("pop3_client_workarounds")).split()),
            lock_session=bool(view.get("pop3_lock_session")),
            save_uidl=bool(view.get("pop3_save_uidl")),
            reuse_xuidl=bool(view.get("pop3_reuse_xuidl")),
            fast_size_lookups=bool(view.get("pop3_fast_size_lookups")),
            uidl_duplicates=str(view.get("pop3_uidl_duplicates")),
        )

    @property
    def flag_deletes(self) -> bool:
        """Dovecot: ``default`` flags when pop3_deleted_flag is set, else expunges."""
        if self.delete_type == "flag":
            return True
        return self.delete_type == "default" and bool(self.deleted_flag)


class Maildrop:
    """The INBOX as one POP3 session sees it; a context manager (it may hold the session
    lock, released by :meth:`close`)."""

    def __init__(self, mailbox: Mailbox, settings: Pop3Settings, *,
                 synced: bool = False) -> None:
        """``synced``: the mailbox was just opened (``open`` syncs): not synced again,
        unless the session lock was taken since (the view must be from under it)."""
        self.mailbox = mailbox
        self.settings = settings
        self.lock: Dotlock | None = None
        self.template = cached_template(settings.uidl_format)
        self.keys = _template_keys(self.template)
        self._check_format()
        if settings.lock_session:
            self.lock = lock_session(mailbox)
        try:
            self._read(mailbox, settings, synced and self.lock is None)
        except BaseException:
            self.close()
            raise

    def _read(self, mailbox: Mailbox, settings: Pop3Settings, synced: bool) -> None:
        if not synced:
            mailbox.sync()
        uids = list(mailbox.uids)
        hidden = 0
        if settings.deleted_flag:  # messages POP3 already "deleted" stay hidden
            bit = self._flag_bit(settings.deleted_flag)
            keep = [i for i, fl in enumerate(mailbox.flags) if not fl & bit]
            hidden = len(uids) - len(keep)
            uids = [uids[i] for i in keep]
        self.uids = uids
        self.hidden = hidden
        self._sources: dict[int, Any] | None = None
        sources = self.sources()  # one pass over the uidlist: O, P, sizes, names
        orders = list(map(_ORDER, sources.values()))
        if orders.count(None) != len(orders):
            # A migration's POP3 order (O fields) first, the other messages after it in UID
            # order, as Dovecot sorts them.
            def place(uid: int) -> tuple[bool, int, int]:
                order = sources[uid].order if uid in sources else None
                return (order is None, order or 0, uid)

            uids.sort(key=place)
            self.uids = uids
        details = mailbox.details(uids)
        if list(map(_UID, details)) != uids:  # a POP3 order, or expunged since the sync
            by_uid = {d.uid: d for d in details}
            if len(by_uid) != len(uids):  # expunged by another session since the sync
                uids[:] = [uid for uid in uids if uid in by_uid]
            details = [by_uid[uid] for uid in uids]
        self.sizes = [d.vsize for d in details]
        # as Dovecot's RETR: only a message without \Seen in this view is marked at QUIT
        # (an unchanged message is not rewritten, so the next session need not sync it)
        self.unseen_at_login = [not d.flags & F.SEEN for d in details]
        if settings.fast_size_lookups:
            # Dovecot: the virtual size if known without reading (W=), else the physical
            # size (S=), else it reads the message after all.
            self.sizes = [s if (s := getattr(sources.get(d.uid), "fast_size", None)) is not None
                          else d.vsize for d in details]
        self._permanent: dict[int, str] | None = None
        self._uidls: dict[int, str] = {}
        self.all_uidls: list[str] | None = None
        self._listed: list[str] | None = None  # see uidl_list
        self._all_failed = False
        self._at_once = settings.all_uidls_at_once  # (a property: not once per message)
        self.unsaved: dict[int, str] = {}  # pop3_save_uidl: sent, not yet in the uidlist

    def __enter__(self) -> Maildrop:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _check_format(self) -> None:
        values = {k: "0" for k in UIDL_VARIABLES}
        values.update({v: "0" for v in UIDL_VARIABLES.values()})
        try:
            self.template.expand(values)
        except VariableError as e:
            raise UidlFormatError(f"pop3_uidl_format: {e}") from e
        if not self.keys:
            raise UidlFormatError("Invalid pop3_uidl_format")  # Dovecot: no UIDL key at all

    def sources(self) -> dict[int, Any]:
        """Maildir's file-name facts per UID (empty for storages without file names)."""
        if self._sources is None:
            lookup: Callable[[list[int]], dict[int, Any]] | None = getattr(
                self.mailbox, "pop3_sources", None)
            self._sources = lookup(self.uids) if lookup is not None else {}
        return self._sources

    @property
    def permanent(self) -> dict[int, str]:
        """UIDLs kept in dovecot-uidlist (P fields: migrated or saved)."""
        if self._permanent is None:
            if hasattr(self.mailbox, "pop3_sources"):
                self._permanent = {uid: src.uidl for uid, src in self.sources().items()
                                   if src.uidl is not None}
            else:
                self._permanent = self.mailbox.pop3_uidls(self.uids)
        return self._permanent

    def uidl(self, index: int) -> str:
        """The UIDL of message ``index`` (0-based), computed once; raises UidlError."""
        if self._at_once and self.all_uidls is None and not self._all_failed:
            try:
                self.all_uidls = self._all_uidls()
            except UidlError:
                self._all_failed = True  # Dovecot goes on one by one, up to the failure
        if self.all_uidls is not None:
            return self.all_uidls[index]
        uid = self.uids[index]
        found = self.permanent.get(uid) or self._uidls.get(uid)
        if found is not None:
            return found
        value = self._computed(index)
        self._uidls[uid] = value
        if self.settings.save_uidl:
            self.unsaved[uid] = value
        return value

    def uidl_list(self) -> list[str] | None:
        """Every UIDL in one pass when none can fail, needs the message or is to be saved
        (the default pop3_uidl_format): the UIDL listing without a call per message.
        None: they are computed one by one (:meth:`uidl`)."""
        if self._listed is None:
            settings = self.settings
            if self._at_once or settings.reuse_xuidl or settings.save_uidl \
                    or settings.uidl_format != DEFAULT_UIDL_FORMAT:
                return None
            permanent = self.permanent
            v = self.mailbox.uidvalidity
            if permanent:
                self._listed = [permanent.get(uid) or f"{uid:08x}{v:08x}" for uid in self.uids]
            else:
                self._listed = [f"{uid:08x}{v:08x}" for uid in self.uids]
        return self._listed

    def _computed(self, index: int) -> str:
        value = self._x_uidl(index) if self.settings.reuse_xuidl else None
        return value if value is not None else self._formatted(self.uids[index])

    def _all_uidls(self) -> list[str]:
        """Every UIDL in one go (Dovecot's client_uidls_save), duplicates renamed ``-2``,
        ``-3``... with ``pop3_uidl_duplicates = rename``; all of them are saved."""
        out: list[str] = []
        counts: dict[str, int] = {}
        rename = self.settings.uidl_duplicates == "rename"
        unsaved: dict[int, str] = {}
        for index, uid in enumerate(self.uids):
            permanent = self.permanent.get(uid)
            value = permanent if permanent is not None else self._computed(index)
            if rename:
                while value in counts:
                    counts[value] += 1
                    value = f"{value}-{counts[value]}"
                counts[value] = 1
            if permanent is None and self.settings.save_uidl:
                unsaved[uid] = value
            out.append(value)
        self.unsaved.update(unsaved)
        return out

    def uidl_change(self, session: Pop3Session) -> str:
        """The logout's ``%u``: CRC32s of the UIDLs the previous session probably left, and of
        what this one leaves (Dovecot's client_build_uidl_change_string)."""
        uidls = self.all_uidls
        if uidls is None:
            return ""  # no UIDL command
        old_count = session.lowest_retr - 1 if session.lowest_retr > 0 else len(uidls)
        old_hash = 0
        for uidl in uidls[:old_count]:
            old_hash ^= zlib.crc32(uidl.encode("utf-8", "surrogateescape"))
        new_hash = 0
        for i, uidl in enumerate(uidls):
            if i not in session.deleted:
                new_hash ^= zlib.crc32(uidl.encode("utf-8", "surrogateescape"))
        new_count = len(uidls) - len(session.deleted)
        if old_hash == new_hash and old_count == new_count:
            return f"{old_count}/{old_hash:08x}"
        return f"{old_count}/{old_hash:08x} -> {new_count}/{new_hash:08x}"

    def _formatted(self, uid: int) -> str:
        if self.settings.uidl_format == DEFAULT_UIDL_FORMAT:
            # the default, spelt out: the template engine costs ~6% of a session's CPU
            # (UIDL of 300 messages); tests/pop3/test_maildrop.py checks both agree
            return f"{uid:08x}{self.mailbox.uidvalidity:08x}"
        values = {"u": str(uid), "v": str(self.mailbox.uidvalidity)}
        mbox = isinstance(self.mailbox, MboxMailbox)
        if "m" in self.keys or ("g" in self.keys and mbox):
            # Dovecot keeps a header MD5 only for mbox (from its sync), where it is also the
            # message GUID; Maildir has none.
            if not mbox:
                raise UidlError("UIDL: Header MD5 not found "
                                "(pop3_uidl_format=%m not supported by storage?)")
            try:
                with self.mailbox.open_message(uid) as f:
                    values["m"] = values["g"] = mbox_header_md5(_read_header(f))
            except MessageGone as e:
                raise UidlError(f"UIDL: Header MD5 lookup failed: {e}") from e
        src = self.sources().get(uid)
        if "f" in self.keys:
            if src is None:
                raise UidlError("UIDL: File name not found "
                                "(pop3_uidl_format=%f not supported by storage?)")
            values["f"] = src.base
        if "g" in self.keys and not mbox:
            if src is None:
                raise UidlError("UIDL: Message GUID not found "
                                "(pop3_uidl_format=%g not supported by storage?)")
            values["g"] = src.guid
        values.update({long: values[k] for k, long in UIDL_VARIABLES.items() if k in values})
        return self.template.expand(values)

    def _x_uidl(self, index: int) -> str | None:
        """The first X-UIDL header's value as Dovecot's mail_get_first_header gives it:
        leading blanks dropped, continuation lines kept after a LF; None without one."""
        try:
            with self.open(index) as f:
                header = _read_header(f)
        except MessageGone:
            return None  # expunged meanwhile: Dovecot falls back to pop3_uidl_format too
        lines = header.split(b"\n")
        found: list[bytes] | None = None
        for line in lines:
            line = line.removesuffix(b"\r")
            if found is not None:
                if line[:1] in (b" ", b"\t"):
                    found.append(line)
                    continue
                break
            name, colon, value = line.partition(b":")
            if colon and name.rstrip(b" \t").lower() == b"x-uidl":
                found = [value.lstrip(b" \t")]
        if found is None:
            return None
        return b"\n".join(found).decode("utf-8", "surrogateescape")

    def idle(self) -> None:
        """Called before each read and while the client idles: keeps the session lock fresh
        (Dovecot touches its lock; the lock rate-limits the touches itself)."""
        if self.lock is not None:
            self.lock.touch()

    def save_uidls(self) -> None:
        if not self.unsaved:
            return
        save: Callable[[dict[int, str]], None] | None = getattr(
            self.mailbox, "save_pop3_uidls", None)
        if save is not None:
            save(self.unsaved)
            self.permanent.update(self.unsaved)
        self.unsaved = {}

    def session(self) -> Pop3Session:
        last = 0
        if self.settings.enable_last:  # Dovecot's LAST starts at the last message seen
            last = next((i + 1 for i in range(len(self.uids) - 1, -1, -1)
                         if not self.unseen_at_login[i]), 0)
        return Pop3Session(self.sizes, self.uidl, enable_last=self.settings.enable_last,
                           uidl_list=self.uidl_list, last_accessed=last)

    def open(self, index: int) -> BinaryIO:
        return self.mailbox.open_message(self.uids[index])

    def clear_seen(self) -> None:
        """RSET with ``pop3_enable_last``: every message of the maildrop loses \\Seen at once
        (a later RETR marks it again at QUIT)."""
        if self.uids:
            self.mailbox.store(self.uids, "-", ["\\Seen"])
        self.unseen_at_login = [True] * len(self.uids)

    def commit(self, session: Pop3Session) -> int:
        """The UPDATE state: apply deletions and \\Seen; returns how many were expunged."""
        deleted = [self.uids[i] for i in sorted(session.deleted)]
        self.save_uidls()
        if not self.settings.no_flag_updates:
            unseen = self.unseen_at_login
            seen = [self.uids[i] for i in sorted(session.seen - session.deleted) if unseen[i]]
            if seen:
                self.mailbox.store(seen, "+", ["\\Seen"])
        if not deleted:
            return 0
        if self.settings.flag_deletes:
            self.mailbox.store(deleted, "+", [self.settings.deleted_flag])
            return 0
        expunge_uids: Callable[[list[int]], list[int]] | None = getattr(
            self.mailbox, "expunge_uids", None)
        if expunge_uids is not None:  # no transient \\Deleted for IMAP sessions to see
            return len(expunge_uids(deleted))
        self.mailbox.store(deleted, "+", ["\\Deleted"])
        return len(self.mailbox.expunge(deleted))

    def logout_values(self, session: Pop3Session, bytes_in: int, bytes_out: int) -> dict[str, str]:
        return logout_values(session, bytes_in, bytes_out, self.uidl_change(session))

    def _flag_bit(self, name: str) -> int:
        bit = F.system_bit(name)
        if bit is not None:
            return bit
        try:
            return F.keyword_bit(self.mailbox.keywords.index(name))
        except ValueError:
            return 0  # a keyword nobody set yet: no message carries it


_UID = itemgetter(0)  # MessageDetails.uid
_ORDER = attrgetter("order")  # Pop3Source.order


def _template_keys(template: Template) -> set[str]:
    """The pop3_uidl_format variables (short names) a template uses."""
    names = {v: k for k, v in UIDL_VARIABLES.items()}
    keys = set()
    for part in template._parts:  # the parsed parts are the only record of the variables
        short = getattr(part, "short", None)
        key = getattr(part, "key", None)
        if short in UIDL_VARIABLES:
            keys.add(short)
        elif key in names:
            keys.add(names[key])
    return keys


# Dovecot's mbox header MD5 ("apop3d" flavour): these headers' values, in header order.
_MD5_ALWAYS = (b"delivered-to", b"x-delivery-id")
_MD5_BEFORE_RECEIVED = (b"date", b"message-id")


def mbox_header_md5(header: bytes) -> str:
    """The header MD5 Dovecot's mbox sync stores (``%m``): the first Received header, Date and
    Message-ID unless a whole Received header came before them, every Delivered-To and
    X-Delivery-ID. A value starts after the colon and one blank; continuation lines count
    whole; line ends do not."""
    digest = hashlib.md5(usedforsecurity=False)
    seen_received = False
    name = b""
    lines = [line.removesuffix(b"\r") for line in header.split(b"\n")]
    for i, line in enumerate(lines):
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            value = line
        else:
            raw_name, _, value = line.partition(b":")
            name = raw_name.rstrip(b" \t").lower()
            if value[:1] in (b" ", b"\t"):
                value = value[1:]
        if name in _MD5_ALWAYS:
            digest.update(value)
        elif name in _MD5_BEFORE_RECEIVED:
            if not seen_received:
                digest.update(value)
        elif name == b"received" and not seen_received:
            digest.update(value)
            following = lines[i + 1] if i + 1 < len(lines) else b""
            if following[:1] not in (b" ", b"\t"):
                seen_received = True
    return digest.hexdigest()


def _read_header(f: BinaryIO) -> bytes:
    """The message's header (up to the empty line), at most XUIDL_HEADER_MAX bytes."""
    data = b""
    while len(data) < XUIDL_HEADER_MAX:
        chunk = f.read(8192)
        if not chunk:
            break
        start = max(0, len(data) - 3)
        data += chunk
        for sep in (b"\n\n", b"\n\r\n"):
            end = data.find(sep, start)
            if end >= 0:
                return data[:end + 1]
    return data


def lock_session(mailbox: Mailbox) -> Dotlock:
    """Take Dovecot's POP3 session lock for this maildrop; raises SessionLocked."""
    loc = getattr(getattr(mailbox, "mlist", None), "loc", None)
    root = getattr(loc, "index_root", None) or getattr(mailbox, "path", None)
    if not isinstance(root, str):
        raise SessionLocked("no directory for the POP3 session lock")
    lock = Dotlock(os.path.join(root, SESSION_LOCK), timeout=SESSION_LOCK_WAIT,
                   stale_timeout=SESSION_LOCK_STALE, mode=0o600)
    try:
        lock.acquire()
    except LockTimeout as e:
        raise SessionLocked(str(e)) from e
    return lock


def logout_values(session: Pop3Session, bytes_in: int, bytes_out: int,
                  uidl_change: str = "") -> dict[str, str]:
    """``pop3_logout_format``'s variables, short and long names."""
    s = session.stats
    values = {
        "i": bytes_in, "o": bytes_out, "t": s.top_count, "p": s.top_bytes,
        "r": s.retr_count, "b": s.retr_bytes, "d": s.deleted_count,
        "m": len(session.sizes), "s": session.total_size, "u": uidl_change,
    }
    long_names = {"i": "input", "o": "output", "t": "top_count", "p": "top_bytes",
                  "r": "retr_count", "b": "retr_bytes", "d": "deleted_count",
                  "m": "message_count", "s": "message_bytes", "u": "uidl_change"}
    out = {k: str(v) for k, v in values.items()}
    out.update({long_names[k]: str(v) for k, v in values.items()})
    out["deleted_bytes"] = str(s.deleted_bytes)
    out["expunged"] = str(s.expunged)
    return out
