"""SORT (RFC 5256, with RFC 5957 DISPLAYFROM/DISPLAYTO and ESORT's RETURN) and THREAD
(ORDEREDSUBJECT, REFERENCES with its subject grouping, and Dovecot's REFS) over the messages
a search program selects. Sort keys come from the storage cache (``MessageData.sort_keys``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cote.storage.api import MessageDetails
from cote.storage.errors import StorageError
from cote.storage.message.searchkeys import base_subject, decode_words
from cote.storage.message.summary import SortKeys

from . import commands as C
from . import response as R
from .message_data import MessageData
from .search import Searcher, SearchMessage, check_charset, esearch

if TYPE_CHECKING:
    from .session import Session

_GONE = MessageDetails(0, 0, 0, 0.0, 0, 0)
"""What sorting knows of a message another session expunged since the view's last sync."""

# -- SORT -----------------------------------------------------------------------------------

def _sort_value(crit: str, keys: SortKeys, d: MessageDetails, seq: int) -> object:
    if crit == "ARRIVAL":
        return d.internal_date
    if crit == "DATE":
        return keys.sent if keys.sent is not None else d.internal_date
    if crit == "SIZE":
        return d.vsize
    if crit == "SUBJECT":
        return keys.subject
    if crit == "FROM":
        return keys.from_
    if crit == "TO":
        return keys.to
    if crit == "CC":
        return keys.cc
    if crit == "DISPLAYFROM":
        return keys.display_from
    if crit == "DISPLAYTO":
        return keys.display_to
    return seq


class _Rev:
    """Reverses the order of one sort key."""

    __slots__ = ("v",)

    def __init__(self, v: object) -> None:
        self.v = v

    def __lt__(self, other: _Rev) -> bool:
        return other.v < self.v  # type: ignore[operator, no-any-return]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and other.v == self.v

    def __hash__(self) -> int:
        return hash(self.v)


def run_sort(s: Session, args: C.Sort, *, uid: bool) -> R.Reply:
    err = check_charset(args.charset)
    if err:
        return err
    box = s.box
    assert box is not None
    hits = Searcher(s).run(args.key)
    uids = [box.uids[i] for i in hits]
    details = {d.uid: d for d in box.details(uids)} if uids else {}
    keyed: list[tuple[list[object], int]] = []
    for i in hits:
        u = box.uids[i]
        data = MessageData(box, u)
        try:
            keys = data.sort_keys()
        except (StorageError, OSError):
            keys = SortKeys("", "", "", "", "", "", None, 0)
        finally:
            data.close()
        vals: list[object] = []
        for reverse, crit in args.criteria:
            v = _sort_value(crit, keys, details.get(u, _GONE), i + 1)
            vals.append(_Rev(v) if reverse else v)
        vals.append(i + 1)
        keyed.append((vals, i))
    keyed.sort(key=lambda t: t[0])
    numbers = [box.uids[i] if uid else i + 1 for _, i in keyed]
    if args.returns is not None:
        esearch(s, args.returns, [i for _, i in keyed], numbers, uid=uid, max_modseq=None)
        return s.ok("SORT")
    s.writer.write(R.sort(numbers))
    return s.ok("SORT")


# -- THREAD ---------------------------------------------------------------------------------

def run_thread(s: Session, args: C.Thread, *, uid: bool) -> R.Reply:
    err = check_charset(args.charset)
    if err:
        return err
    box = s.box
    assert box is not None
    searcher = Searcher(s)
    hits = searcher.run(args.key)
    uids = [box.uids[i] for i in hits]
    details = {d.uid: d for d in box.details(uids)} if uids else {}
    infos: list[Info] = []
    for i in hits:
        u = box.uids[i]
        data = MessageData(box, u)
        try:
            keys = data.sort_keys()
            m = SearchMessage(i, u, data)
            fields = searcher.fields(m)
        except (StorageError, OSError):
            keys = SortKeys("", "", "", "", "", "", None, 0)
            fields = []
        finally:
            data.close()
        sent = keys.sent if keys.sent is not None else details.get(u, _GONE).internal_date
        num = u if uid else i + 1
        msgid = _last(fields, b"message-id")
        refs = _msgids(_last(fields, b"references") or b"")
        if not refs:
            irt = _msgids(_last(fields, b"in-reply-to") or b"")
            refs = irt[:1]
        ids = _msgids(msgid or b"")
        raw_subject = _last(fields, b"subject")
        infos.append((num, i, sent, keys.subject, ids[0] if ids else None, refs,
                      _is_reply(raw_subject)))
    if args.algorithm == "ORDEREDSUBJECT":
        roots = _ordered_subject(infos)
    else:
        roots = _references(infos, refs_mode=args.algorithm == "REFS")
    # an empty result is "* THREAD " with the space, as Dovecot writes it
    s.writer.write(R.thread(roots) if roots else b"* THREAD \r\n")
    return s.ok("THREAD")


def _last(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    value = None
    for k, v in fields:
        if k == name:
            value = v
    return value


def _msgids(value: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while True:
        a = value.find(b"<", pos)
        if a < 0:
            break
        b = value.find(b">", a)
        if b < 0:
            break
        inner = value[a + 1:b].strip()
        if b"@" in inner:
            out.append(inner)
        pos = b + 1
    return out


Info = tuple[int, int, float, str, bytes | None, list[bytes], bool]
"""(number, index, date, base subject key, Message-ID, references, subject is a reply)."""


def _is_reply(raw: bytes | None) -> bool:
    """Whether RFC 5256's base-subject extraction removed a reply/forward marker."""
    if raw is None:
        return False
    text = " ".join(decode_words(raw).split())
    return base_subject(raw).casefold() != text.casefold()


def _ordered_subject(infos: list[Info]) -> list[R.ThreadNode]:
    groups: dict[str, list[Info]] = {}
    for info in sorted(infos, key=lambda t: (t[3], t[2], t[1])):
        groups.setdefault(info[3], []).append(info)
    threads = sorted(groups.values(), key=lambda g: (g[0][2], g[0][1]))
    out: list[R.ThreadNode] = []
    for g in threads:
        children = tuple((x[0], ()) for x in g[1:])
        out.append((g[0][0], children))
    return out


class _Node:
    __slots__ = ("children", "info", "parent")

    def __init__(self) -> None:
        self.info: Info | None = None
        self.parent: _Node | None = None
        self.children: list[_Node] = []


def _references(infos: list[Info], *, refs_mode: bool = False) -> list[R.ThreadNode]:
    """RFC 5256 REFERENCES: link by Message-ID/References, group the roots by base subject
    (step 5), sort by date. ``refs_mode`` is Dovecot's REFS: no subject grouping, threads
    ordered by their newest message."""
    table: dict[bytes, _Node] = {}
    order: list[_Node] = []

    def node(mid: bytes) -> _Node:
        n = table.get(mid)
        if n is None:
            n = _Node()
            table[mid] = n
        return n

    def is_ancestor(a: _Node, b: _Node) -> bool:
        x: _Node | None = b
        while x is not None:
            if x is a:
                return True
            x = x.parent
        return False

    def link(parent: _Node, child: _Node) -> None:
        if child.parent is not None or parent is child or is_ancestor(child, parent):
            return
        child.parent = parent
        parent.children.append(child)

    for info in infos:
        mid = info[4]
        if mid is None or (mid in table and table[mid].info is not None):
            me = _Node()
        else:
            me = node(mid)
        me.info = info
        order.append(me)
        refs = info[5]
        prev: _Node | None = None
        for ref in refs:
            n = node(ref)
            if prev is not None:
                link(prev, n)
            prev = n
        if prev is not None and prev is not me:
            if me.parent is not None:
                me.parent.children.remove(me)
                me.parent = None
            if not is_ancestor(me, prev):
                me.parent = prev
                prev.children.append(me)
    roots: list[_Node] = [n for n in [*table.values(), *order] if n.parent is None]
    seen: set[int] = set()
    unique_roots: list[_Node] = []
    for r in roots:
        if id(r) not in seen:
            seen.add(id(r))
            unique_roots.append(r)

    def prune(n: _Node) -> list[_Node]:
        kids: list[_Node] = []
        for c in n.children:
            kids.extend(prune(c))
        n.children = kids
        for c in kids:
            c.parent = n
        if n.info is None:
            if not kids:
                return []
            if len(kids) == 1 or n.parent is not None:
                return kids
        return [n]

    top: list[_Node] = []
    for r in unique_roots:
        r.parent = None
        top.extend(prune(r))

    def date_of(n: _Node) -> tuple[float, int]:
        if n.info is not None:
            return (n.info[2], n.info[1])
        return min((date_of(c) for c in n.children), default=(0.0, 0))

    def newest(n: _Node) -> tuple[float, int]:
        own = [(n.info[2], n.info[1])] if n.info is not None else []
        return max(own + [newest(c) for c in n.children], default=(0.0, 0))

    if not refs_mode:
        top = _group_by_subject(top)

    def build(n: _Node) -> R.ThreadNode:
        kids = sorted(n.children, key=date_of)
        return (n.info[0] if n.info is not None else None, tuple(build(c) for c in kids))

    return [build(n) for n in sorted(top, key=newest if refs_mode else date_of)]


def _subject_of(n: _Node) -> tuple[str, bool]:
    if n.info is not None:
        return n.info[3], n.info[6]
    if n.children and n.children[0].info is not None:
        return n.children[0].info[3], n.children[0].info[6]
    return "", False


def _group_by_subject(roots: list[_Node]) -> list[_Node]:
    """RFC 5256 REFERENCES step 5: roots with the same base subject become one thread."""
    table: dict[str, _Node] = {}
    for r in roots:
        subject, _ = _subject_of(r)
        if not subject:
            continue
        old = table.get(subject)
        if old is None or (r.info is None and old.info is not None) or \
                (old.info is not None and r.info is not None and old.info[6]
                 and not r.info[6]):
            table[subject] = r
    out: list[_Node] = []
    # merge the non-replies first: two of them make a dummy that the replies then join
    for r in sorted(roots, key=lambda n: _subject_of(n)[1]):
        subject, reply = _subject_of(r)
        target = table.get(subject) if subject else None
        if target is None or target is r:
            out.append(r)
            continue
        if target.info is None and r.info is None:
            for c in r.children:
                c.parent = target
            target.children.extend(r.children)
        elif target.info is None or (reply and not target.info[6]):
            r.parent = target
            target.children.append(r)
        else:
            dummy = _Node()
            for n in (target, r):
                n.parent = dummy
                dummy.children.append(n)
            index = out.index(target) if target in out else -1
            if index >= 0:
                out[index] = dummy
            else:
                out.append(dummy)
            table[subject] = dummy
    return out


