"""STORE (with UNCHANGEDSINCE), COPY and MOVE on the selected mailbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cote.storage import flags as F
from cote.storage.api import StoreResult
from cote.storage.errors import StorageError

from . import commands as C
from . import response as R
from .search import register_keywords
from .values import SeqSet

if TYPE_CHECKING:
    from .session import Session


def run_store(s: Session, args: C.Store, *, uid: bool) -> R.Reply:
    box = s.box
    assert box is not None
    idx = s.indexes_of_set(args.seqset, uid=uid)
    if idx is None:
        return R.bad("Error in IMAP command STORE: Invalid messageset")
    register_keywords(s, list(args.flags))
    if s.readonly:
        s.send_keywords_if_new()
        return R.ok("Store ignored with read-only mailbox")
    if args.unchangedsince is not None:
        s.enable_condstore()
    uids = [box.uids[i] for i in idx]
    was_deleted = {u for u, i in zip(uids, idx, strict=True) if box.flags[i] & F.DELETED}
    flags = list(args.flags)
    if args.mode == "-":  # a keyword no message has cannot be removed (nor be created)
        known = {k.lower() for k in box.keywords}
        flags = [f for f in flags if f.startswith("\\") or f.lower() in known]
    if uids and (flags or args.mode != "-"):
        result = box.store(uids, args.mode or "=", flags, args.unchangedsince)
    else:
        result = StoreResult([], [])
    changed = set(result.changed)
    if changed:
        all_bits = 0
        for i in idx:
            all_bits |= box.flags[i]
        box.flag_names(all_bits)  # a new keyword enters the view's table
    s.send_keywords_if_new()
    for u in changed:
        seq = box.seq_of(u)
        if seq is not None and box.flags[seq - 1] & F.DELETED and u not in was_deleted:
            s.stats.deleted += 1
    s.flags_reported = changed if not args.silent else set()
    for i in idx:
        u = box.uids[i] if i < len(box.uids) else 0
        if u not in changed or (args.silent and not s.condstore):
            continue
        # written with the session's flag updates, in sequence order (as Dovecot does)
        s.pending_fetches[i] = s.flags_fetch(i, uid=uid, silent=args.silent)
    if result.modified:
        if uid:
            mod = SeqSet.from_ints(result.modified)
        else:
            mod = SeqSet.from_ints(box.seq_of(u) or 0 for u in result.modified)
        return R.ok("Conditional store failed", f"MODIFIED {mod}")
    return s.ok("STORE")


def run_copy(s: Session, args: C.Copy, *, uid: bool, move: bool) -> R.Reply:
    box = s.box
    assert box is not None
    name = "MOVE" if move else "COPY"
    idx = s.indexes_of_set(args.seqset, uid=uid)
    if idx is None:
        return R.bad(f"Error in IMAP command {name}: Invalid messageset")
    err = s.mailbox_name_error(args.mailbox)
    if err:
        return err
    dest_name = args.mailbox.name
    uids = [box.uids[i] for i in idx]
    if not uids:
        return R.ok("No messages found")
    if dest_name != "INBOX" and not s.mailboxes.exists(dest_name):
        return R.no(f"Mailbox doesn't exist: {dest_name}", "TRYCREATE")
    same = dest_name == box.name
    # Dovecot moves out of an EXAMINEd mailbox too: a second, writable view does it
    source = s.open_for_saving(box.name) if move and s.readonly else box
    dest = source if same and not source.readonly else \
        s.open_for_saving(dest_name) if not same or source.readonly else source
    try:
        pairs = source.move(uids, dest) if move else source.copy(uids, dest)
        validity = dest.uidvalidity
    except StorageError as e:
        return s.storage_no(e)
    finally:
        if dest is not source:
            dest.close()
        if source is not box:
            source.close()
    if not pairs:  # every one was expunged by another session since the view's sync
        return R.no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    pairs.sort()
    code = R.copyuid(validity, _set_in_order([p[0] for p in pairs]),
                     _set_in_order([p[1] for p in pairs]))
    if any("\\Trash" in use.split() for name, use in s.settings.special_use
           if name == dest_name):
        s.stats.trashed += len(pairs)
    if move:  # (Dovecot's expunged= counts EXPUNGE only, not MOVE)
        s.writer.write(R.untagged("OK", "Moved UIDs.", code))
        return s.ok("MOVE", s.highestmodseq_code())
    return s.ok("COPY", code)


def _set_in_order(numbers: list[int]) -> SeqSet:
    """A set that keeps the pairing order (COPYUID's two sets correspond item by item)."""
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return SeqSet(tuple(ranges))
