"""LIST, LSUB and LIST-EXTENDED (RFC 5258 selection/return options, RFC 5819 STATUS,
RFC 6154 SPECIAL-USE), with attributes in Dovecot's order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cote.storage.api import MailboxInfo
from cote.storage.errors import StorageError
from cote.storage.pattern import compile_pattern

from . import commands as C
from . import response as R

if TYPE_CHECKING:
    from .session import Session

_ATTR_ORDER = {"\\Subscribed": 0, "\\NonExistent": 1, "\\Noselect": 2, "\\HasChildren": 3,
               "\\HasNoChildren": 4, "\\NoInferiors": 5, "\\Marked": 6, "\\UnMarked": 7}
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
            full = _pattern(args.reference, pattern, sep)
            found = s.mailboxes.list(full, subscribed=True)
            for info in found:
                attrs = {a for a in info.attributes if a == "\\Noselect" or a in _SPECIAL}
                w.write(R.list_line(_ordered(attrs), sep, info.name, lsub=True))
            # RFC 3501 6.3.9: with "%", a parent of subscribed names that is not subscribed
            # itself is listed \Noselect
            listed = {info.name for info in found}
            match = compile_pattern(full, sep)
            parents: list[str] = []
            for sub in s.mailboxes.subscriptions():
                if match(sub):
                    continue
                parts = sub.split(sep)
                for k in range(1, len(parts)):
                    parent = sep.join(parts[:k])
                    if parent not in listed and parent not in parents and match(parent):
                        parents.append(parent)
            for parent in parents:
                w.write(R.list_line(["\\Noselect"], sep, parent, lsub=True))
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
    childinfo: set[str] = set()
    if "RECURSIVEMATCH" in args.selection and subscribed_sel:
        for pattern in args.patterns:
            match = compile_pattern(_pattern(args.reference, pattern, sep), sep)
            for sub in sorted(subs):
                parts = sub.split(sep)
                for k in range(1, len(parts)):
                    parent = sep.join(parts[:k])
                    if not match(parent):
                        continue
                    childinfo.add(parent)
                    if parent not in seen:
                        seen.add(parent)
                        exists = s.mailboxes.exists(parent)
                        rows.append(MailboxInfo(parent, frozenset(
                            () if exists else ("\\NonExistent",))))
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
        extended = [b'CHILDINFO ("SUBSCRIBED")'] if info.name in childinfo else []
        w.write(R.list_line(_ordered(attrs), sep, info.name, extended=extended))
        if "STATUS" in args.returns and not attrs & {"\\Noselect", "\\NonExistent"}:
            try:
                s.write_status(info.name, args.status_items)
            except StorageError:
                pass
    return s.ok("LIST")
