"""FETCH: every data item, streamed.

Per message the response is written item by item into the session's writer; message bodies
are read from the mapped file in 1 MB CRLF-converted chunks, and the generator yields to the
adapter whenever the writer holds more than ``HIGH_WATER`` octets, so FETCH 1:* BODY[] over
100,000 messages keeps memory flat. Item order follows Dovecot: ``UID`` first for UID FETCH,
then the items the index answers (UID, FLAGS, INTERNALDATE, RFC822.SIZE, MODSEQ) in the
client's order, then a ``FLAGS`` that a non-peek body fetch changed when the client did not
ask for FLAGS, then every other item in the client's order.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING

from cote.storage import flags as F
from cote.storage.api import Mailbox, MessageDetails
from cote.storage.errors import StorageError
from cote.storage.message import (
    BinaryContent,
    BinaryParseError,
    UnknownCTE,
    binary_content,
    binary_size,
    crlf_chunks,
    crlf_size,
    section_range,
)
from cote.storage.message.headers import Buffer
from cote.storage.message.sections import HEADER_FIELDS_NOT, header_fields
from cote.storage.message.sections import Section as MsgSection

from . import commands as C
from . import response as R
from .message_data import HEADER_READ, MessageData, flush_cache
from .values import FetchAtt, Section, SeqSet

if TYPE_CHECKING:
    from .session import Session

BATCH = 512
HIGH_WATER = 256 * 1024
"""Octets queued in the writer before a command pauses for the adapter to send."""
_STRUCTURE = {"ENVELOPE": "envelope", "BODYSTRUCTURE": "bodystructure", "BODY": "body"}
_INDEX = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
_HEADER_SPECS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME")


def msg_section(s: Section | None) -> MsgSection:
    if s is None:
        return MsgSection((), b"")
    spec = (s.text or "").encode()
    return MsgSection(s.part, spec, tuple(f.encode("latin-1") for f in s.fields))


def _normalize(att: FetchAtt) -> tuple[str, FetchAtt]:
    """(response name, the equivalent BODY/BINARY item) for RFC822* aliases."""
    if att.name == "RFC822":
        return "RFC822", FetchAtt("BODY", Section(), None, False)
    if att.name == "RFC822.HEADER":
        return "RFC822.HEADER", FetchAtt("BODY", Section((), "HEADER"), None, True)
    if att.name == "RFC822.TEXT":
        return "RFC822.TEXT", FetchAtt("BODY", Section((), "TEXT"), None, False)
    return att.response_name, att


def _sets_seen(att: FetchAtt) -> bool:
    return (att.section is not None and not att.peek and att.name in ("BODY", "BINARY")) \
        or att.name in ("RFC822", "RFC822.TEXT")


def run_fetch(s: Session, args: C.Fetch, *, uid: bool) -> Generator[None, None, R.Reply]:
    box = s.box
    assert box is not None
    idx = s.indexes_of_set(args.seqset, uid=uid)
    if idx is None:
        return R.bad("Error in IMAP command FETCH: Invalid messageset")
    atts = list(args.atts)
    if any(a.name == "MODSEQ" for a in atts) or args.changedsince is not None:
        s.enable_condstore()
    if uid and atts and atts[0].name == "UID":
        atts = [atts[0]] + [a for a in atts[1:] if a.name != "UID"]
    elif uid:
        atts = [FetchAtt("UID")] + [a for a in atts if a.name != "UID"]
    if args.changedsince is not None:
        idx = [i for i in idx if box.modseqs[i] > args.changedsince]
        if args.vanished:
            _vanished(s, args)
    # Dovecot's order: the items its index answers, then the others, each in request order
    ordered = [a for a in atts if a.name in _INDEX] + [a for a in atts if a.name not in _INDEX]
    want_flags = any(a.name == "FLAGS" for a in atts)
    sets_seen = not s.readonly and any(_sets_seen(a) for a in atts)
    need_details = any(a.name in ("INTERNALDATE", "RFC822.SIZE") for a in atts)
    gone = False
    w = s.writer
    # only what the index holds (FETCH 1:* (UID FLAGS) of a whole mailbox): whole batches of
    # lines built at once, no per-message file access or generator
    index_only = not sets_seen and all(a.name in _INDEX for a in ordered)
    # the same with ENVELOPE (a client's message list): when a batch's envelopes are all
    # in the cache, its lines are built the same way
    with_envelope = not sets_seen and not index_only and \
        all(a.name in _INDEX or a.name == "ENVELOPE" for a in ordered)
    columns = sorted({"envelope" if a.name == "ENVELOPE" else "bodystructure"
                      for a in ordered if a.name in _STRUCTURE and a.section is None})
    flag_memo: dict[tuple[int, bool], bytes] = {}
    for start in range(0, len(idx), BATCH):
        chunk = idx[start:start + BATCH]
        if not chunk:
            continue
        seen_changed: set[int] = set()
        if sets_seen:
            unseen = [box.uids[i] for i in chunk if not box.flags[i] & F.SEEN]
            if unseen:
                try:
                    seen_changed = set(box.store(unseen, "+", ["\\Seen"]).changed)
                except StorageError:
                    seen_changed = set()
        details: dict[int, MessageDetails] = {}
        if need_details:
            try:
                details = {d.uid: d for d in box.details([box.uids[i] for i in chunk])}
            except StorageError:
                details = {}
        cached = [] if index_only else _prefetch(box, [box.uids[i] for i in chunk], columns)
        envelopes = dict(cached).get("envelope", {}) if with_envelope else None
        if index_only or (envelopes is not None and
                          all(map(envelopes.__contains__, map(box.uids.__getitem__, chunk)))):
            lines, forgot = _index_lines(s, chunk, ordered, details, flag_memo,
                                         envelopes=envelopes)
            w.write(lines)
            gone = gone or forgot
            if w.pending > HIGH_WATER:
                yield None
            continue
        cache_writes: list[tuple[int, str, bytes]] = []
        if "envelope" in columns:  # the headers not cached yet: all asked of the disk at once
            have = dict(cached).get("envelope", {})
            _will_read(box, [box.uids[i] for i in chunk if box.uids[i] not in have])
        for i in chunk:
            u = box.uids[i]
            msg = MessageData(box, u, cache_writes)
            for column, values in cached:
                msg.preload(column, values.get(u))
            try:
                ok = yield from _one(s, w, i, u, msg, items=ordered,
                                     details=details,
                                     send_flags=want_flags or u in seen_changed,
                                     asked_flags=want_flags)
            finally:
                msg.close()
            if isinstance(ok, R.Reply):  # BINARY could not decode: the FETCH ends here
                return ok
            if not ok:
                gone = True
            if w.pending > HIGH_WATER:
                yield None
        try:
            flush_cache(box, cache_writes)
        except StorageError:
            pass  # a cache that cannot be written is recomputed next time
    if gone:
        return R.ok("Some messages were already expunged", "EXPUNGEISSUED")
    return s.ok("FETCH")


def _prefetch(box: Mailbox, uids: list[int], columns: list[str]
              ) -> list[tuple[str, dict[int, bytes]]]:
    """The batch's cached ENVELOPE/BODYSTRUCTURE values, one query per column."""
    try:
        return [(column, box.cache_get_many(uids, column)) for column in columns]
    except StorageError:
        return []  # each message then reads its own


def _will_read(box: Mailbox, uids: list[int]) -> None:
    if uids:
        try:
            box.will_read(uids, HEADER_READ)
        except StorageError:
            pass  # only a hint


def _index_lines(s: Session, chunk: list[int], items: list[FetchAtt],
                 details: Mapping[int, MessageDetails],
                 flag_memo: dict[tuple[int, bool], bytes], *,
                 envelopes: Mapping[int, bytes] | None = None) -> tuple[bytes, bool]:
    """The FETCH lines of a batch whose items all come from the index (and ``envelopes``,
    the batch's cached ENVELOPEs, when asked), as ``_one`` writes them; a message the index
    forgot (expunged elsewhere) gets ``_gone``'s line, and the second value says there was
    one."""
    box = s.box
    assert box is not None
    uids, flags, modseqs, recent = box.uids, box.flags, box.modseqs, s.recent
    need_details = any(a.name in ("INTERNALDATE", "RFC822.SIZE") for a in items)
    names = [a.name for a in items]
    out: list[bytes] = []
    gone = False
    if names == ["UID", "FLAGS"]:  # every client's flag resync: one format per line
        for i in chunk:
            u = uids[i]
            key = (flags[i], u in recent)
            text = flag_memo.get(key)
            if text is None:
                text = flag_memo[key] = b"FLAGS " + s.flags_of(i)
            out.append(b"* %d FETCH (UID %d %s)\r\n" % (i + 1, u, text))
        return b"".join(out), gone
    for i in chunk:
        u = uids[i]
        if need_details and u not in details:
            w = R.Writer()
            _gone(s, w, i, u, items=items, details=details)
            out.append(w.take())
            gone = True
            continue
        line = [b"* %d FETCH (" % (i + 1)]
        for n, name in enumerate(names):
            if n:
                line.append(b" ")
            if name == "UID":
                line.append(b"UID %d" % u)
            elif name == "FLAGS":
                key = (flags[i], u in recent)
                text = flag_memo.get(key)
                if text is None:
                    text = flag_memo[key] = b"FLAGS " + s.flags_of(i)
                line.append(text)
            elif name == "MODSEQ":
                line.append(b"MODSEQ (%d)" % modseqs[i])
            elif name == "INTERNALDATE":
                line.append(b"INTERNALDATE " + R.internaldate(details[u].internal_date))
            elif name == "ENVELOPE":
                assert envelopes is not None
                line.append(b"ENVELOPE " + envelopes[u])
            else:  # RFC822.SIZE
                line.append(b"RFC822.SIZE %d" % details[u].vsize)
        line.append(b")\r\n")
        out.append(b"".join(line))
    return b"".join(out), gone


def _vanished(s: Session, args: C.Fetch) -> None:
    box = s.box
    assert box is not None and args.changedsince is not None
    uids = [u for u in box.expunged_since(args.changedsince)
            if args.seqset.saved or args.seqset.contains(u, box.uidnext)]
    if uids:
        s.writer.write(R.vanished(SeqSet.from_ints(uids), earlier=True))


def _one(s: Session, w: R.Writer, i: int, u: int, msg: MessageData, *, items: list[FetchAtt],
         details: Mapping[int, MessageDetails], send_flags: bool,
         asked_flags: bool) -> Generator[None, None, bool | R.Reply]:
    box = s.box
    assert box is not None
    if any(a.name in ("INTERNALDATE", "RFC822.SIZE") for a in items) and u not in details:
        # expunged by another session since the view was synced: the index forgot it
        _gone(s, w, i, u, items=items, details=details)
        return False
    # load what can fail before the first octet of the response
    try:
        for a in items:
            if a.name in _STRUCTURE and a.section is None:
                msg.cached(_STRUCTURE[a.name])
        if any(a.section is not None or (a.name.startswith("RFC822.") and a.name !=
               "RFC822.SIZE") or a.name == "RFC822" for a in items):
            _ = msg.buf
            if any(_needs_parts(a) for a in items):
                _ = msg.parts
        binary = _decode_binary(msg, items)
    except BinaryFailure as failure:
        # Dovecot: the message's line carries only its UID, the command fails
        w.write(b"* %d FETCH (UID %d)\r\n" % (i + 1, u))
        return failure.reply
    except (StorageError, OSError):
        # expunged by another session: what the index knows, NIL for the rest (Dovecot)
        _gone(s, w, i, u, items=items, details=details)
        return False
    w.write(b"* %d FETCH (" % (i + 1))
    first = True

    def sep() -> None:
        nonlocal first
        if first:
            first = False
        else:
            w.write(b" ")

    if send_flags and not asked_flags:  # \\Seen set by this FETCH: after the index items
        at = next((j for j, a in enumerate(items) if a.name not in _INDEX), len(items))
        items = [*items[:at], FetchAtt("FLAGS"), *items[at:]]
    for a in items:
        name = a.name
        sep()
        if name == "UID":
            w.write(b"UID %d" % u)
        elif name == "FLAGS":
            w.write(b"FLAGS " + s.flags_of(i))
        elif name == "MODSEQ":
            w.write(b"MODSEQ (%d)" % box.modseqs[i])
        elif name == "INTERNALDATE":
            d = details.get(u)
            w.write(b"INTERNALDATE " + R.internaldate(d.internal_date if d else 0.0))
        elif name == "RFC822.SIZE":
            d = details.get(u)
            w.write(b"RFC822.SIZE %d" % (d.vsize if d else 0))
        elif name in _STRUCTURE and a.section is None:
            w.write(name.encode() + b" " + msg.cached(_STRUCTURE[name]))
        elif name == "X-MAILBOX":
            w.write(b"X-MAILBOX " + R.mailbox_name(box.name))
        elif name == "X-REAL-UID":
            w.write(b"X-REAL-UID %d" % u)
        elif a.name in ("BINARY", "BINARY.SIZE"):
            _binary_item(s, w, a, binary[id(a)])
        elif a.section is not None or name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            yield from _body_item(s, w, msg, a)
        else:  # SAVEDATE and object ids: not stored
            w.write(name.encode() + b" NIL")
    w.write(b")\r\n")
    return True


class BinaryFailure(Exception):
    """BINARY[…] of a part that cannot be decoded: the tagged reply Dovecot gives."""

    def __init__(self, reply: R.Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


UNKNOWN_CTE = R.no("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE")
PARSE_ERROR = R.no("Invalid data in MIME part", "PARSE")


def _decode_binary(msg: MessageData, items: list[FetchAtt]) -> dict[int, BinaryContent | int]:
    """Every BINARY item's content (or BINARY.SIZE's size), decoded before anything of the
    message is written, keyed by ``id(item)``; raises ``BinaryFailure``."""
    out: dict[int, BinaryContent | int] = {}
    for a in items:
        if a.name not in ("BINARY", "BINARY.SIZE"):
            continue
        section = msg_section(a.section)
        try:
            if a.name == "BINARY.SIZE":
                out[id(a)] = binary_size(msg.buf, msg.parts, section)
            else:
                out[id(a)] = binary_content(msg.buf, msg.parts, section)
        except UnknownCTE as e:
            raise BinaryFailure(UNKNOWN_CTE) from e
        except BinaryParseError as e:
            raise BinaryFailure(PARSE_ERROR) from e
    return out


def _binary_item(s: Session, w: R.Writer, a: FetchAtt, result: BinaryContent | int) -> None:
    if isinstance(result, int):
        w.write(f"BINARY.SIZE[{a.section}] ".encode() + b"%d" % result)
        return
    data = result.data
    if a.partial is not None:
        off, length = a.partial
        data = data[off:] if length is None else data[off:off + length]
    head = b"~{%d}\r\n" if result.literal8 else b"{%d}\r\n"
    w.write(a.response_name.encode() + b" " + head % len(data))
    w.write(data)
    s.stats.fetch_body_count += 1
    s.stats.fetch_body_bytes += len(data)


def _gone(s: Session, w: R.Writer, i: int, u: int, *, items: list[FetchAtt],
          details: Mapping[int, MessageDetails]) -> None:
    box = s.box
    assert box is not None
    out = []
    for a in items:
        if a.name == "UID":
            out.append(b"UID %d" % u)
        elif a.name == "FLAGS":
            out.append(b"FLAGS " + s.flags_of(i))
        elif a.name == "MODSEQ":
            out.append(b"MODSEQ (%d)" % box.modseqs[i])
        elif a.name in ("INTERNALDATE", "RFC822.SIZE") and u in details:
            d = details[u]
            out.append(b"INTERNALDATE " + R.internaldate(d.internal_date)
                       if a.name == "INTERNALDATE" else b"RFC822.SIZE %d" % d.vsize)
        else:
            out.append(_normalize(a)[0].encode() + b" NIL")
    w.write(b"* %d FETCH (" % (i + 1) + b" ".join(out) + b")\r\n")


def _body_item(s: Session, w: R.Writer, msg: MessageData, att: FetchAtt
               ) -> Generator[None, None, bool]:
    name, a = _normalize(att)
    buf = msg.buf
    section = msg_section(a.section)
    if not _needs_parts(a):  # BODY[] / RFC822: the whole file, no structure needed
        return (yield from _stream(s, w, name, a, buf, rng=(0, len(buf)), header_only=False))
    parts = msg.parts
    header_only = section.specifier.decode() in _HEADER_SPECS
    stats = s.stats
    rng = section_range(parts, section)
    if section.specifier in (b"HEADER.FIELDS", HEADER_FIELDS_NOT):
        data = b"" if rng is None else header_fields(
            buf, rng[0], section.fields, section.specifier == HEADER_FIELDS_NOT,
            not section.path)
        if a.partial is not None:
            off, length = a.partial
            data = data[off:] if length is None else data[off:off + length]
        w.write(name.encode() + b" {%d}\r\n" % len(data))
        w.write(data)
        stats.fetch_hdr_count += 1
        stats.fetch_hdr_bytes += len(data)
        return True
    if rng is None:
        w.write(name.encode() + b" {0}\r\n")
        return True
    return (yield from _stream(s, w, name, a, buf, rng=rng, header_only=header_only))


def _needs_parts(a: FetchAtt) -> bool:
    """Whether an item needs the MIME structure (all but the whole message do)."""
    if a.name == "RFC822":
        return False
    if a.name != "BODY" or a.section is None:
        return a.section is not None or a.name in ("RFC822.HEADER", "RFC822.TEXT")
    return bool(a.section.part or a.section.text)


def _stream(s: Session, w: R.Writer, name: str, a: FetchAtt, buf: Buffer, *,
            rng: tuple[int, int], header_only: bool) -> Generator[None, None, bool]:
    """A literal of ``buf[rng]`` with CRLF line ends, in chunks, pausing at the high-water
    mark."""
    stats = s.stats
    total = crlf_size(buf, rng[0], rng[1])
    off, length = 0, None
    size = total
    if a.partial is not None:
        off, length = a.partial
        size = max(0, total - off) if length is None else max(0, min(length, total - off))
    w.write(name.encode() + b" {%d}\r\n" % size)
    sent = 0
    if size:
        for chunk in crlf_chunks(buf, rng[0], rng[1], off, size):
            w.write(chunk)
            sent += len(chunk)
            if w.pending > HIGH_WATER:
                yield None
    if sent < size:  # the file shrank under us: keep the literal's promise
        w.write(b" " * (size - sent))
    if header_only:
        stats.fetch_hdr_count += 1
        stats.fetch_hdr_bytes += size
    else:
        stats.fetch_body_count += 1
        stats.fetch_body_bytes += size
    return True
