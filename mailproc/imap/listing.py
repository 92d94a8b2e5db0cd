"""LIST, LSUB and LIST-EXTENDED (RFC 5258 selection/return options, RFC 5819 STATUS,
RFC 6154 SPECIAL-USE), with attributes in Dovecot's order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cote.storage.api import MailboxInfo
from cote.storage.errors import StorageError

from . import commands as C
from . import response as R

if TYPE_CHECKING:
    from .session import Session

_ATTR_ORDER = {"\\Noselect": 0, "\\NonExistent": 1, "\\Subscribed": 2, "\\Marked": 3,
               "\\Unmarked": 4, "\\HasChildren": 5, "\\HasNoChildren": 6, "\\NoInferiors": 7}
_CHILD_ATTRS = {"\\HasChildren", "\\HasNoChildren"}
_SPECIAL = {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}


def _ordered(attrs: set[str]) -> list[str]:
    return sorted(attrs, key=lambda a: (_ATTR_ORDER.get(a, 8), a))


def _pattern(reference: str, pattern: str, sep: str) -> str:
    if not reference or pattern.startswith(sep):
        return pattern
    return reference + pattern


def run_list(s: Session, args: C.List) -> R.Reply:
    sep = s.separator
    w = s.writer
    if args.lsub:
        for pattern in args.patterns:
            for info in s.mailboxes.list(_pattern(args.reference, pattern, sep),
                                         subscribed=True):
                attrs = {a for a in info.attributes if a == "\\Noselect"}
                if "\\NonExistent" in info.attributes:
                    attrs.add("\\Noselect")
                w.write(R.list_line(_ordered(attrs), sep, info.name, lsub=True))
        return s.ok("LSUB")
    if len(args.patterns) == 1 and args.patterns[0] == "" and not args.extended:
        w.write(R.list_line(["\\Noselect"], sep, ""))
        return s.ok("LIST")
    subscribed_sel = "SUBSCRIBED" in args.selection
    want_subscribed = subscribed_sel or "SUBSCRIBED" in args.returns
    special_sel = "SPECIAL-USE" in args.selection
    subs: set[str] = set(s.mailboxes.subscriptions()) if want_subscribed else set()
    seen: set[str] = set()
    rows: list[MailboxInfo] = []
    for pattern in args.patterns:
        full = _pattern(args.reference, pattern, sep)
        found = s.mailboxes.list(full, subscribed=subscribed_sel)
        for info in found:
            if info.name in seen:
                continue
            seen.add(info.name)
            rows.append(info)
    for info in rows:
        attrs = set(info.attributes)
        if special_sel and not attrs & _SPECIAL:
            continue
        if args.extended and "SPECIAL-USE" not in args.returns and not special_sel and \
                args.returns:
            attrs -= _SPECIAL
        if want_subscribed and info.name in subs:
            attrs.add("\\Subscribed")
        if args.extended and "CHILDREN" not in args.returns:
            attrs -= _CHILD_ATTRS
        if "\\NonExistent" in attrs:
            attrs.discard("\\Noselect")
        w.write(R.list_line(_ordered(attrs), sep, info.name))
        if "STATUS" in args.returns and not attrs & {"\\Noselect", "\\NonExistent"}:
            try:
                s.write_status(info.name, args.status_items)
            except StorageError:
                pass
    return s.ok("LIST")
