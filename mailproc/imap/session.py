"""One authenticated IMAP session: the authenticated and selected states and every command.

The session is sans-IO in the same sense as the parser: it consumes ``Connection`` events and
writes responses into the connection's one buffered ``Writer``; the I/O adapter
(``server.py``) moves bytes. Storage calls block, which is fine: a mail process serves one
user. ``handle(event)`` returns a generator; a command that produces much output (FETCH of
100,000 messages, a 50 MB body) yields whenever the writer holds more than ``HIGH_WATER``
octets, and the adapter sends before resuming it, so no response is built whole in memory.

Pending updates: the view of the selected mailbox changes only in ``Mailbox.sync()``, and the
session calls it only where RFC 3501 lets untagged EXPUNGE be sent, i.e. not after FETCH,
STORE, SEARCH (nor SORT, THREAD), so sequence numbers never shift under a client that is
using them; their UID forms may see expunges, as in Dovecot. Flag changes made by other
sessions are still taken in and shown there (``refresh_flags``).
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from cote import imapwire
from cote.log import Logger
from cote.storage import flags as F
from cote.storage.api import Mailbox, MailboxList, MailboxStatus, SyncChanges
from cote.storage.errors import MailboxNotFound, StorageError

from . import commands as C
from . import events as ev
from . import response as R
from .append import AppendCommand, close_quietly
from .connection import Connection
from .fetch import HIGH_WATER, run_fetch
from .listing import run_list
from .qresync import select_qresync
from .search import run_search
from .settings import ImapSettings
from .sort import run_sort, run_thread
from .store import run_copy, run_store
from .values import Mailbox as Mailbox_
from .values import SeqSet

SERVERBUG = "Internal error occurred. Refer to server log for more information."
SYSTEM_ORDER = ((F.ANSWERED, "\\Answered"), (F.FLAGGED, "\\Flagged"),
                (F.DELETED, "\\Deleted"), (F.SEEN, "\\Seen"), (F.DRAFT, "\\Draft"))
SELECTED_ONLY = frozenset({"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE",
                           "COPY", "MOVE", "SORT", "THREAD"})
NO_EXPUNGE_COMMANDS = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})
"""After these (not their UID forms) the session does not sync: the client is using sequence
numbers, which must stay as it knows them (RFC 3501 7.4.1)."""
NO_SYNC_COMMANDS = frozenset({"STATUS", "LIST", "LSUB", "CREATE", "DELETE", "RENAME",
                              "SUBSCRIBE", "UNSUBSCRIBE", "NAMESPACE", "ID", "ENABLE",
                              "CAPABILITY", "GETQUOTAROOT", "GETQUOTA", "SETQUOTA"})
"""Commands that, as in Dovecot, answer without looking for changes in the selected mailbox."""
DONE_TEXT = {
    "CAPABILITY": "Capability completed", "NOOP": "NOOP completed", "CHECK": "Check completed",
    "CREATE": "Create completed", "DELETE": "Delete completed", "RENAME": "Rename completed",
    "SUBSCRIBE": "Subscribe completed", "UNSUBSCRIBE": "Unsubscribe completed",
    "LIST": "List completed", "LSUB": "Lsub completed", "STATUS": "Status completed",
    "NAMESPACE": "Namespace completed", "ID": "ID completed", "ENABLE": "Enabled",
    "FETCH": "Fetch completed", "STORE": "Store completed", "SEARCH": "Search completed",
    "SORT": "Sort completed", "THREAD": "Thread completed", "COPY": "Copy completed",
    "MOVE": "Move completed", "EXPUNGE": "Expunge completed", "CLOSE": "Close completed",
    "UNSELECT": "Unselect completed", "APPEND": "Append completed", "IDLE": "Idle completed",
    "LOGOUT": "Logout completed",
}


def flags_bytes(names_of_keywords: list[str], bits: int, recent: bool) -> bytes:
    """``(\\Deleted \\Seen \\Recent foo)`` in Dovecot's order."""
    out = [name for bit, name in SYSTEM_ORDER if bits & bit]
    if recent:
        out.append("\\Recent")
    if bits >> F.KEYWORD_SHIFT:
        kws = names_of_keywords
        out.extend(kws[i] for i in F.keyword_indexes(bits) if i < len(kws))
    return b"(" + " ".join(out).encode("utf-8") + b")"


def autocreate(mailboxes: MailboxList, settings: ImapSettings) -> None:
    """``mailbox X { auto = create|subscribe }``: made (and subscribed) at login."""
    for name, mode in settings.auto:
        try:
            if not mailboxes.exists(name):
                mailboxes.create(name)
                if mode == "subscribe":
                    mailboxes.subscribe(name)
        except StorageError:
            continue


def old_seq(seq: int, expunged_seqs: tuple[int, ...]) -> int:
    """The sequence number a message had before the expunges ``expunged_seqs`` (old
    numbers, ascending) that a sync took in."""
    for gone in expunged_seqs:
        if gone <= seq:
            seq += 1
        else:
            break
    return seq


@dataclass
class Stats:
    """What the logout line counts (Dovecot's ``imap_logout_format`` variables)."""

    bytes_in: int = 0
    bytes_out: int = 0
    deleted: int = 0
    expunged: int = 0
    trashed: int = 0
    fetch_hdr_count: int = 0
    fetch_hdr_bytes: int = 0
    fetch_body_count: int = 0
    fetch_body_bytes: int = 0
    autoexpunged: int = 0

    def values(self) -> dict[str, str | None]:
        return {"input": str(self.bytes_in), "output": str(self.bytes_out),
                "i": str(self.bytes_in), "o": str(self.bytes_out),
                "deleted": str(self.deleted), "expunged": str(self.expunged),
                "trashed": str(self.trashed), "autoexpunged": str(self.autoexpunged),
                "fetch_hdr_count": str(self.fetch_hdr_count),
                "fetch_hdr_bytes": str(self.fetch_hdr_bytes),
                "fetch_body_count": str(self.fetch_body_count),
                "fetch_body_bytes": str(self.fetch_body_bytes)}


class Session:
    """The state of one logged-in client; see the module docstring."""

    SERVERBUG_TEXT = SERVERBUG

    def __init__(self, mailboxes: MailboxList, conn: Connection, user: str,
                 settings: ImapSettings | None = None, log: Logger | None = None) -> None:
        self.log = log
        self.mailboxes = mailboxes
        self.conn = conn
        self.writer = conn.writer
        self.user = user
        self.settings = settings or ImapSettings()
        self.box: Mailbox | None = None
        self.readonly = False
        self.recent: set[int] = set()
        self.reported_recent = 0
        self.keyword_count = 0
        self.local_keywords: dict[str, list[str]] = {}
        self.flags_reported: set[int] = set()
        self.pending_fetches: dict[int, bytes] = {}
        self.unreported_flags: set[int] = set()
        """UIDs whose flags ``refresh_flags`` took in but no response has shown yet."""
        """STORE's FETCH lines by index, written with the flag updates (``_command``)."""
        """UIDs whose new flags STORE already sent (not repeated as flag updates)."""
        self.enabled: set[str] = set()
        self.condstore = False
        self.saved: list[int] | None = None  # SEARCHRES $ (UIDs)
        self.stats = Stats()
        self.logged_out = False
        self.disconnect_reason = "Logged out"
        """What the logout line says after ``logged_out`` (LOGOUT, or the BYE we sent)."""
        self.idling: str | None = None
        self._append: AppendCommand | None = None
        self._synced = False
        self.current_tag = ""
        self.last_command: str | None = None
        self.last_started = 0.0
        self.last_finished: float | None = None

    def last_command_status(self) -> str:
        """Dovecot's note on a dropped connection: ``No commands sent``, ``FETCH finished
        0.703 secs ago`` or ``IDLE running for 2.000 secs``."""
        if self.last_command is None:
            return "No commands sent"
        now = time.monotonic()
        if self.last_finished is None:
            return f"{self.last_command} running for {now - self.last_started:.3f} secs"
        return f"{self.last_command} finished {now - self.last_finished:.3f} secs ago"

    def log_error(self, text: str) -> None:
        if self.log is not None:
            self.log.error(text)

    # -- helpers ------------------------------------------------------------------------
    @property
    def separator(self) -> str:
        return self.mailboxes.separator

    def capabilities(self) -> tuple[str, ...]:
        return self.settings.capability

    def flags_of(self, index: int) -> bytes:
        box = self.box
        assert box is not None
        bits = box.flags[index]
        if bits >> (F.KEYWORD_SHIFT + len(box.keywords)):
            box.flag_names(bits)  # refreshes the keyword table (a keyword made since sync)
        return flags_bytes(box.keywords, bits, box.uids[index] in self.recent)

    def open_for_saving(self, name: str) -> Mailbox:
        """A view to APPEND/COPY into that does not claim the messages' \\Recent flag
        (only a SELECT does, as in Dovecot)."""
        return self.mailboxes.open_for_saving(name)

    def reply(self, tag: str, r: R.Reply, started: float) -> None:
        took = time.monotonic() - started
        if self._synced:
            text = f"{r.text} " + R.timing(took, 0.0, took)
        else:
            text = f"{r.text} " + R.timing(took, 0.0)
        self._synced = False
        self.writer.write(R.tagged(tag, r.status, text, r.code))
        self.last_finished = time.monotonic()

    def ok(self, name: str, code: str | None = None) -> R.Reply:
        return R.ok(DONE_TEXT.get(name, name.capitalize() + " completed"), code)

    @staticmethod
    def storage_no(e: StorageError) -> R.Reply:
        return R.no(e.message, e.code)

    def mailbox_name_error(self, mailbox: Mailbox_) -> R.Reply | None:
        if not mailbox.valid:
            return R.no("Mailbox name is not valid mUTF-7")
        return None

    # -- entry point --------------------------------------------------------------------
    def greeting(self) -> bytes:
        return R.untagged("PREAUTH", f"Logged in as {self.user}",
                          R.capability_code(self.capabilities()))

    def handle(self, event: ev.Event) -> Iterator[None]:
        """Process one event from the connection; a generator (see the module docstring)."""
        if isinstance(event, ev.Command):
            if self._append is not None and event.name != "APPEND":
                self._append_abort()
            return self._command(event)
        if isinstance(event, (ev.LiteralStart, ev.LiteralChunk, ev.LiteralEnd, ev.CommandEnd)):
            self._append_event(event)
            return iter(())
        if isinstance(event, ev.IdleDone):
            self.idling = None
            self.sync_and_report(uid=False)
            self.reply(event.tag, self.ok("IDLE"), time.monotonic())
            return iter(())
        if isinstance(event, ev.Bad):
            if self._append is not None:
                self._append_abort()
            if self.idling is not None:
                self.idling = None
            self.writer.write(R.tagged(event.tag, "BAD",
                                       event.text + " " + R.timing(0.001, 0.0)))
            return iter(())
        if isinstance(event, ev.Bye):
            self.writer.write(R.untagged("BYE", event.text))
            self.logged_out = True
            self.disconnect_reason = event.text
            return iter(())
        return iter(())

    def _command(self, cmd: ev.Command) -> Generator[None, None, None]:
        started = time.monotonic()
        name = cmd.name
        self.current_tag = cmd.tag
        self.last_command = ("UID " + name) if cmd.uid else name
        self.last_started, self.last_finished = started, None
        if name in SELECTED_ONLY and self.box is None:
            self.reply(cmd.tag, R.bad("No mailbox selected"), started)
            return
        method = getattr(self, "cmd_" + name.lower(), None)
        if method is None:
            self.reply(cmd.tag, R.bad(f"Unknown command {name}"), started)
            return
        self.flags_reported = set()
        if name in ("FETCH", "STORE") and self.box is not None:
            # they work on current flags; SEARCH, SORT and THREAD on the view's (Dovecot)
            self.unreported_flags.update(self.refresh_flags())
        try:
            result = method(cmd)
            reply: R.Reply | None
            if isinstance(result, Generator):
                reply = yield from result
            else:
                reply = result
        except StorageError as e:
            reply = self.storage_no(e)
        except Exception as e:
            self.log_error(f"{name} failed: {type(e).__name__}: {e}")
            reply = R.no(SERVERBUG, "SERVERBUG")
        if reply is None:  # the command answered by itself (IDLE, APPEND in progress)
            return
        if name in NO_EXPUNGE_COMMANDS and name not in ("FETCH", "STORE") and \
                self.box is not None and reply.status != "BAD":
            self.unreported_flags.update(self.refresh_flags())
        if reply.status != "BAD" and (self.unreported_flags or self.pending_fetches):
            # (after a BAD, Dovecot reports them with the next command)
            self.report_flag_updates(uid=False)
        if self.box is not None and (cmd.uid or name not in NO_EXPUNGE_COMMANDS) and \
                name not in NO_SYNC_COMMANDS and \
                name not in ("SELECT", "EXAMINE", "LOGOUT"):
            self.sync_and_report(uid=cmd.uid)
        if reply.code == "HIGHESTMODSEQ" and self.box is not None:
            reply = R.Reply(reply.status, reply.text,
                            f"HIGHESTMODSEQ {self.box.highestmodseq}")
        self.reply(cmd.tag, reply, started)
        if self.writer.pending > HIGH_WATER:
            yield

    # -- pending updates ----------------------------------------------------------------
    def sync_and_report(self, *, uid: bool) -> SyncChanges | None:
        """Sync the view and send EXPUNGE/VANISHED, EXISTS, RECENT, FETCH FLAGS."""
        box = self.box
        if box is None:
            return None
        try:
            changes = box.sync()
        except StorageError:
            return None
        self._synced = True
        self.report(changes, uid=uid)
        return changes

    def report(self, changes: SyncChanges, *, uid: bool) -> None:
        box = self.box
        assert box is not None
        w = self.writer
        if changes.uidvalidity_changed:
            w.write(R.untagged("BYE", "Mailbox UIDVALIDITY changed"))
            self.logged_out = True
            self.disconnect_reason = "Mailbox UIDVALIDITY changed"
            return
        self.send_keywords_if_new()
        changed = set(changes.flags_changed) | self.unreported_flags
        self.unreported_flags = set()
        seqs = sorted(s for s in (box.seq_of(u) for u in changed) if s is not None)
        # as Dovecot: flag updates first, numbered as the client knows the messages (before
        # the expunges that follow them), then the expunges
        for seq in seqs:
            w.write(self.flags_fetch(seq - 1, uid=False,
                                     shown_seq=old_seq(seq, changes.expunged_seqs)))
        if changes.expunged:
            if "QRESYNC" in self.enabled:
                w.write(R.vanished(SeqSet.from_ints(changes.expunged)))
            else:
                for seq in reversed(changes.expunged_seqs):
                    w.write(R.expunge(seq))
            self.recent.difference_update(changes.expunged)
        if changes.new:
            self.recent.update(box.recent_uids() if not self.readonly else box.peek_recent_uids())
            w.write(R.exists(len(box)))
        if len(self.recent) != self.reported_recent:
            self.reported_recent = len(self.recent)
            w.write(R.recent(len(self.recent)))

    def refresh_flags(self) -> list[int]:
        """Take in flag changes other sessions made, without a sync (FETCH, STORE and
        SEARCH may not shift sequence numbers, but Dovecot works on current flags there);
        returns the UIDs whose flags changed, to report after the command."""
        if self.box is None:
            return []
        try:
            return self.box.refresh_flags()
        except StorageError:
            return []

    def report_flag_updates(self, *, uid: bool) -> None:
        """``* n FETCH (FLAGS …)`` for changes taken in by ``refresh_flags`` (except for
        messages STORE reports itself) merged with STORE's own, in sequence order. Dovecot
        writes these updates without UID (unless QRESYNC is on), UID commands included."""
        box = self.box
        lines = self.pending_fetches
        self.pending_fetches = {}
        uids, self.unreported_flags = self.unreported_flags, set()
        if box is not None:
            for u in uids:
                seq = box.seq_of(u)
                if seq is not None and u not in self.flags_reported:
                    lines.setdefault(seq - 1, self.flags_fetch(seq - 1, uid=uid))
        for i in sorted(lines):
            self.writer.write(lines[i])
        self.flags_reported = set()

    def flags_fetch(self, index: int, *, uid: bool, silent: bool = False,
                    shown_seq: int | None = None) -> bytes:
        """``* n FETCH (UID u MODSEQ (m) FLAGS (…))`` for a flag change, as Dovecot writes
        it (UID with UID commands and under QRESYNC, MODSEQ under CONDSTORE)."""
        box = self.box
        assert box is not None
        items = []
        if uid or "QRESYNC" in self.enabled:
            items.append(b"UID %d" % box.uids[index])
        if self.condstore:
            items.append(b"MODSEQ (%d)" % box.modseqs[index])
        if not silent:
            items.append(b"FLAGS " + self.flags_of(index))
        seq = index + 1 if shown_seq is None else shown_seq
        return b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"

    def all_keywords(self) -> list[str]:
        """The mailbox's keywords, then those only this session named (see search.py)."""
        box = self.box
        assert box is not None
        local = self.local_keywords.get(box.name)
        if not local:
            return list(box.keywords)
        known = {k.lower() for k in box.keywords}
        return list(box.keywords) + [k for k in local if k.lower() not in known]

    def send_keywords_if_new(self) -> None:
        if self.box is None:
            return
        keywords = self.all_keywords()
        if len(keywords) == self.keyword_count:
            return
        self.keyword_count = len(keywords)
        self.write_flags()

    def write_flags(self) -> None:
        box = self.box
        assert box is not None
        system = [name for _, name in SYSTEM_ORDER]
        keywords = self.all_keywords()
        self.writer.write(R.flags(system + keywords))
        if self.readonly:
            self.writer.write(R.untagged("OK", "Read-only mailbox.",
                                         R.permanentflags_code([])))
        else:
            self.writer.write(R.untagged(
                "OK", "Flags permitted.",
                R.permanentflags_code(system + keywords + ["\\*"])))

    # -- any state ----------------------------------------------------------------------
    def cmd_capability(self, cmd: ev.Command) -> R.Reply:
        self.writer.write(R.capability(self.capabilities()))
        return self.ok("CAPABILITY")

    def cmd_noop(self, cmd: ev.Command) -> R.Reply:
        return self.ok("NOOP")

    def cmd_check(self, cmd: ev.Command) -> R.Reply:
        if self.box is not None and not self.readonly:
            try:
                self.box.flush()  # a full write sync (mbox_lazy_writes)
            except StorageError as e:
                return self.storage_no(e)
        return self.ok("CHECK")

    def cmd_logout(self, cmd: ev.Command) -> R.Reply:
        self.writer.write(R.untagged("BYE", "Logging out"))
        self.logged_out = True
        if self.box is not None:
            self.close_box()
        return self.ok("LOGOUT")

    def cmd_enable(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Enable)
        done: list[str] = []
        for cap in args.capabilities:
            if cap in ("CONDSTORE", "QRESYNC") and cap not in done:
                self.enabled.add(cap)
                done.append(cap)
                self.enable_condstore()
        self.conn.enabled = frozenset(self.enabled)
        self.writer.write(R.enabled(done))
        return self.ok("ENABLE")

    def enable_condstore(self) -> None:
        if not self.condstore:
            self.condstore = True
            if self.box is not None:
                self.writer.write(R.untagged("OK", "Highest",
                                             f"HIGHESTMODSEQ {self.box.highestmodseq}"))

    def cmd_id(self, cmd: ev.Command) -> R.Reply:
        self.writer.write(R.id_response({"name": "Dovecot"}))
        return self.ok("ID")

    def cmd_namespace(self, cmd: ev.Command) -> R.Reply:
        data = getattr(self.mailboxes, "namespace_data", None)
        self.writer.write(R.namespace(*data()) if data is not None
                          else R.namespace([("", self.separator)]))
        return self.ok("NAMESPACE")

    def cmd_idle(self, cmd: ev.Command) -> None:
        self.sync_and_report(uid=False)
        self._synced = False
        self.writer.write(R.continuation("idling"))
        self.idling = cmd.tag
        self.conn.idle(cmd.tag)

    def idle_wakeup(self) -> None:
        """Another process changed the mailbox (or the notify interval passed)."""
        if self.idling is None:
            return
        self.sync_and_report(uid=False)
        self._synced = False

    # -- QUOTA (imap_quota plugin; the roots are storage's Quota, built from plugin { }) ----
    def _quota_lines(self, root: str) -> bytes | None:
        quota = getattr(self.mailboxes, "quota", None)
        resources = quota.resources(root) if quota is not None else None
        if resources is None:
            return None
        items = " ".join(f"{r.name} {r.usage} {r.limit}" for r in resources)
        return b"* QUOTA " + imapwire.astring(root.encode()) + b" (" + items.encode() + b")\r\n"

    def cmd_getquotaroot(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args if isinstance(cmd.args, list) else []
        mailbox = C.astring(args[0]) if len(args) == 1 else None
        if mailbox is None:
            return R.bad("Error in IMAP command GETQUOTAROOT: Missing arguments")
        quota = getattr(self.mailboxes, "quota", None)
        roots = quota.roots_for(mailbox.decode("utf-8", "replace")) if quota is not None else []
        if not roots:
            return R.ok("No quota")
        self.writer.write(b"* QUOTAROOT " + imapwire.astring(mailbox) + b"".join(
            b" " + imapwire.astring(r.encode()) for r in roots) + b"\r\n")
        for root in roots:
            self.writer.write(self._quota_lines(root) or b"")
        return self.ok("GETQUOTAROOT")

    def cmd_getquota(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args if isinstance(cmd.args, list) else []
        root = C.astring(args[0]) if len(args) == 1 else None
        if root is None:
            return R.bad("Error in IMAP command GETQUOTA: Missing arguments")
        lines = self._quota_lines(root.decode("utf-8", "replace"))
        if lines is None:
            return R.no("Quota root doesn't exist")
        self.writer.write(lines)
        return self.ok("GETQUOTA")

    @staticmethod
    def cmd_setquota(cmd: ev.Command) -> R.Reply:
        return R.no("Quota can be changed only by admin")

    # -- mailbox management -------------------------------------------------------------
    def cmd_create(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.MailboxArg)
        err = self.mailbox_name_error(args.mailbox)
        if err:
            return err
        name = args.mailbox.name
        if name.endswith(self.separator):
            name = name[:-len(self.separator)]
        if name.upper() == "INBOX" or self.mailboxes.exists(name):
            return R.no("Mailbox already exists", "ALREADYEXISTS")
        self.mailboxes.create(name)
        return self.ok("CREATE")

    def cmd_delete(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.MailboxArg)
        err = self.mailbox_name_error(args.mailbox)
        if err:
            return err
        name = args.mailbox.name
        if name == "INBOX":
            return R.no("INBOX can't be deleted.")
        if self.box is not None and self.box.name == name:
            self.close_box()
        self.mailboxes.delete(name)
        return self.ok("DELETE")

    def cmd_rename(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Rename)
        for mb in (args.old, args.new):
            err = self.mailbox_name_error(mb)
            if err:
                return err
        if args.old.name == args.new.name:
            return R.no("Can't rename mailbox to itself", "ALREADYEXISTS")
        if args.old.name != "INBOX" and not self.mailboxes.exists(args.old.name):
            return R.no(f"Mailbox doesn't exist: {args.old.name}", "NONEXISTENT")
        if args.new.name == "INBOX" or self.mailboxes.exists(args.new.name):
            return R.no("Target mailbox already exists", "ALREADYEXISTS")
        self.mailboxes.rename(args.old.name, args.new.name)
        return self.ok("RENAME")

    def cmd_subscribe(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.MailboxArg)
        err = self.mailbox_name_error(args.mailbox)
        if err:
            return err
        try:
            self.mailboxes.subscribe(args.mailbox.name)
        except MailboxNotFound as e:
            return R.no(e.message)
        return self.ok("SUBSCRIBE")

    def cmd_unsubscribe(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.MailboxArg)
        err = self.mailbox_name_error(args.mailbox)
        if err:
            return err
        self.mailboxes.unsubscribe(args.mailbox.name)
        return self.ok("UNSUBSCRIBE")

    def cmd_list(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.List)
        return run_list(self, args)

    cmd_lsub = cmd_list

    def cmd_status(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Status)
        err = self.mailbox_name_error(args.mailbox)
        if err:
            return err
        name = args.mailbox.name
        # the answer names the mailbox as the client wrote INBOX ("inbox" stays "inbox")
        shown = args.mailbox.raw.decode("latin-1") if name == "INBOX" else name
        try:
            self.write_status(name, args.items, shown=shown)
        except MailboxNotFound as e:
            return R.no(e.message)
        if self.box is not None and self.box.name == name:
            return R.ok("Status on selected mailbox completed", "CLIENTBUG")
        return self.ok("STATUS")

    def write_status(self, name: str, items: tuple[str, ...], *, shown: str | None = None
                     ) -> None:
        selected = self.box is not None and self.box.name == name
        st = self.view_status(items) if selected else self.mailboxes.status(name)
        values: dict[str, int] = {}
        if "HIGHESTMODSEQ" in items and not self.condstore:
            self.enable_condstore()
        for item in items:
            if item == "MESSAGES":
                values[item] = st.messages
            elif item == "RECENT":
                values[item] = st.recent
            elif item == "UIDNEXT":
                values[item] = st.uidnext
            elif item == "UIDVALIDITY":
                values[item] = st.uidvalidity
            elif item == "UNSEEN":
                values[item] = st.unseen
            elif item == "HIGHESTMODSEQ":
                values[item] = st.highestmodseq
            elif item in ("SIZE", "X-SIZE"):
                values[item] = st.size
            elif item == "DELETED":
                values[item] = st.deleted
        order = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ",
                 "SIZE", "X-SIZE", "DELETED")
        ordered = {k: values[k] for k in order if k in values}
        self.writer.write(R.status(shown or name, ordered))

    def view_status(self, items: tuple[str, ...]) -> MailboxStatus:
        """STATUS of the selected mailbox answers from the session's view, as Dovecot's:
        mail another session added or expunged is counted only once EXISTS/EXPUNGE told
        the client (the pending-updates model; RFC 3501 section 6.3.10 lets STATUS of the
        selected mailbox be inconsistent with the disk, never with what the client saw)."""
        box = self.box
        assert box is not None
        unseen = sum(1 for bits in box.flags if not bits & F.SEEN)
        deleted = sum(1 for bits in box.flags if bits & F.DELETED)
        sized = len(box) and ("SIZE" in items or "X-SIZE" in items)
        size = sum(d.vsize for d in box.details(box.uids)) if sized else 0
        return MailboxStatus(len(box), len(self.recent), box.uidnext, box.uidvalidity,
                             unseen, box.highestmodseq, size, deleted)

    # -- SELECT / EXAMINE / CLOSE -----------------------------------------------------------
    def close_box(self) -> None:
        if self.box is not None:
            self.local_keywords.pop(self.box.name, None)
            close_quietly(self.box)
        self.box = None
        self.recent = set()
        self.saved = None
        self.unreported_flags = set()

    def cmd_select(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Select)
        readonly = cmd.name == "EXAMINE"
        if self.box is not None:
            self.close_box()
            self.writer.write(R.untagged("OK", "Previous mailbox closed.", "CLOSED"))
        err = self.mailbox_name_error(args.mailbox)
        if err:
            return err
        if args.condstore or args.qresync:
            self.enable_condstore()
        try:
            box = self.mailboxes.open(args.mailbox.name, readonly=readonly)
        except MailboxNotFound as e:
            return R.no(e.message)
        except StorageError as e:
            return self.storage_no(e)
        self.box = box
        self.readonly = readonly
        self.recent = set(box.recent_uids() if not readonly else box.peek_recent_uids())
        self.keyword_count = len(box.keywords)
        w = self.writer
        self.write_flags()
        w.write(R.exists(len(box)))
        w.write(R.recent(len(self.recent)))
        self.reported_recent = len(self.recent)
        unseen = box.first_unseen()
        if unseen is not None:
            w.write(R.untagged("OK", "First unseen.", f"UNSEEN {unseen}"))
        w.write(R.untagged("OK", "UIDs valid", f"UIDVALIDITY {box.uidvalidity}"))
        w.write(R.untagged("OK", "Predicted next UID", f"UIDNEXT {box.uidnext}"))
        if self.condstore:
            w.write(R.untagged("OK", "Highest", f"HIGHESTMODSEQ {box.highestmodseq}"))
        if args.qresync is not None:
                select_qresync(self, args.qresync)
        if readonly:
            return R.ok("Examine completed", "READ-ONLY")
        return R.ok("Select completed", "READ-WRITE")

    cmd_examine = cmd_select

    def cmd_close(self, cmd: ev.Command) -> R.Reply:
        box = self.box
        assert box is not None
        if not self.readonly:
            try:
                gone = box.expunge()
                self.stats.expunged += len(gone)
                # Dovecot syncs the mailbox before closing it: mail that arrived since the
                # last sync is this session's \Recent (never reported), not the next one's
                box.sync()
            except StorageError:
                pass
        self.close_box()
        return self.ok("CLOSE")

    def cmd_unselect(self, cmd: ev.Command) -> R.Reply:
        self.close_box()
        return self.ok("UNSELECT")

    # -- EXPUNGE ------------------------------------------------------------------------
    def cmd_expunge(self, cmd: ev.Command) -> R.Reply:
        box = self.box
        assert box is not None
        args = cmd.args
        if self.readonly:
            return self.ok("EXPUNGE")
        uids: list[int] | None = None
        if isinstance(args, C.Expunge) and args.uids is not None:
            uids = self.uids_of_set(args.uids, uid=True)
        gone = box.expunge(uids)
        self.stats.expunged += len(gone)
        return self.ok("EXPUNGE", self.highestmodseq_code())

    def highestmodseq_code(self) -> str | None:
        """RFC 7162 3.2.10: under QRESYNC, EXPUNGE and MOVE end with the new HIGHESTMODSEQ
        (taken after the session's sync, see ``_command``)."""
        if "QRESYNC" not in self.enabled or self.box is None:
            return None
        return "HIGHESTMODSEQ"

    # -- sets ---------------------------------------------------------------------------
    def indexes_of_set(self, s: SeqSet, *, uid: bool) -> list[int] | None:
        """0-based indexes a set selects in the view, ascending; None for a sequence set
        that goes beyond the mailbox (Dovecot's "Invalid messageset")."""
        box = self.box
        assert box is not None
        n = len(box)
        if not n and not uid and not s.saved:
            return None
        if s.saved:
            saved = self.saved or []
            out = [box.seq_of(u) for u in saved]
            return sorted(i - 1 for i in out if i is not None)
        if uid:
            uids = box.uids
            if not n:
                return []
            out_idx: list[int] = []
            for lo, hi in s.resolve(uids[-1]):
                a = bisect_left(uids, lo)
                b = bisect_right(uids, hi)
                out_idx.extend(range(a, b))
            return out_idx
        ranges = s.resolve(n)
        if ranges and ranges[-1][1] > n:
            return None
        out2: list[int] = []
        for lo, hi in ranges:
            out2.extend(range(lo - 1, hi))
        return out2

    def uids_of_set(self, s: SeqSet, *, uid: bool) -> list[int]:
        box = self.box
        assert box is not None
        idx = self.indexes_of_set(s, uid=uid) or []
        return [box.uids[i] for i in idx]

    # -- FETCH / STORE / SEARCH / COPY (their own modules) ---------------------------------
    def cmd_fetch(self, cmd: ev.Command) -> Generator[None, None, R.Reply]:
        args = cmd.args
        assert isinstance(args, C.Fetch)
        return run_fetch(self, args, uid=cmd.uid)

    def cmd_store(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Store)
        return run_store(self, args, uid=cmd.uid)

    def cmd_search(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Search)
        return run_search(self, args, uid=cmd.uid)

    def cmd_sort(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Sort)
        return run_sort(self, args, uid=cmd.uid)

    def cmd_thread(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Thread)
        return run_thread(self, args, uid=cmd.uid)

    def cmd_copy(self, cmd: ev.Command) -> R.Reply:
        args = cmd.args
        assert isinstance(args, C.Copy)
        return run_copy(self, args, uid=cmd.uid, move=cmd.name == "MOVE")

    cmd_move = cmd_copy

    # -- APPEND (append.py) ----------------------------------------------------------------
    def cmd_append(self, cmd: ev.Command) -> None:
        args = cmd.args
        assert isinstance(args, C.Append)
        self._append = AppendCommand.start(self, cmd.tag, args)

    def unfinished_append(self) -> str | None:
        """The tag of an APPEND still waiting for its literal data, if any."""
        return self._append.tag if self._append is not None else None

    def _append_event(self, event: ev.Event) -> None:
        if self._append is not None and self._append.event(event):
            self._append = None

    def _append_abort(self) -> None:
        if self._append is not None:
            self._append.abort()
            self._append = None

    # -- end -------------------------------------------------------------------------------
    def close(self) -> None:
        self._append_abort()
        self.close_box()
        try:
            self.mailboxes.close()
        except (StorageError, OSError):
            pass

