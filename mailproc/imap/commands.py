"""Second pass: the IMAP command grammar (RFC 3501 + the extensions Dovecot 2.3 offers).

``parse_command(name, tokens)`` turns a command's generic tokens (see ``tokens.py``) into one
typed, frozen value per command (``Fetch``, ``Store``, ``Search`` …) that a command handler
consumes without looking at syntax again. Errors raise ``SyntaxErr`` with the text Dovecot
puts after ``BAD Error in IMAP command NAME: `` for the same input.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from cote import imapwire, mutf7

from .tokens import Arg, Atom, Literal, Quoted, SyntaxErr, is_nil
from .values import (
    FETCH_MACROS,
    STAR,
    FetchAtt,
    Mailbox,
    ModSeqEntry,
    QResync,
    SearchKey,
    Section,
    SeqSet,
)

# -- typed command arguments --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    username: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    """``initial_response`` is the SASL-IR base64 text as sent (``b"="`` = empty), or None."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT / EXAMINE."""

    mailbox: Mailbox
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class MailboxArg:
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE."""

    mailbox: Mailbox


@dataclass(frozen=True, slots=True)
class Rename:
    old: Mailbox
    new: Mailbox


@dataclass(frozen=True, slots=True)
class List:
    """LIST (also LIST-EXTENDED) and LSUB (``lsub=True``).

    ``patterns`` are decoded names with ``%``/``*`` kept; ``selection`` holds the selection
    options (``SUBSCRIBED``, ``REMOTE``, ``RECURSIVEMATCH``, ``SPECIAL-USE``), ``returns`` the
    return options (``SUBSCRIBED``, ``CHILDREN``, ``SPECIAL-USE``, ``STATUS``) and
    ``status_items`` the items of ``RETURN (STATUS (...))``.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False
    lsub: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: Mailbox
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    """The start of an APPEND; each message follows as a ``LiteralStart`` event."""

    mailbox: Mailbox


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Id:
    """``None`` for ``ID NIL``; else (field, value) pairs as sent."""

    params: tuple[tuple[bytes, bytes | None], ...] | None


@dataclass(frozen=True, slots=True)
class Fetch:
    seqset: SeqSet
    atts: tuple[FetchAtt, ...]
    changedsince: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Store:
    """``mode`` is ``""`` (replace), ``"+"`` or ``"-"``; ``flags`` as sent (system flags
    canonically capitalised, keywords verbatim)."""

    seqset: SeqSet
    mode: str
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    """COPY and MOVE."""

    seqset: SeqSet
    mailbox: Mailbox


@dataclass(frozen=True, slots=True)
class Search:
    """``returns`` is None for a plain SEARCH; a tuple (maybe empty = ALL) for ESEARCH."""

    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Sort:
    """``criteria`` is a tuple of ``(reverse, key)``."""

    criteria: tuple[tuple[bool, str], ...]
    charset: str
    key: SearchKey
    returns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    algorithm: str
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE (``uids`` None) and UID EXPUNGE."""

    uids: SeqSet | None = None


@dataclass(frozen=True, slots=True)
class Compress:
    mechanism: str


_NONE: frozenset[str] = frozenset()

# -- helpers --------------------------------------------------------------------------------

_NUMBER = re.compile(rb"[0-9]+\Z")
_SEQ_RANGE = re.compile(rb"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?\Z")
MAX_UINT32 = 0xFFFFFFFF
MAX_UINT63 = 0x7FFFFFFFFFFFFFFF
SYSTEM_FLAGS = {b"\\ANSWERED": "\\Answered", b"\\FLAGGED": "\\Flagged",
                b"\\DELETED": "\\Deleted", b"\\SEEN": "\\Seen", b"\\DRAFT": "\\Draft"}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}


def _atom_upper(arg: object) -> str | None:
    if type(arg) is Atom:
        return arg.decode("ascii", "replace").upper()
    return None


def astring(arg: object) -> bytes | None:
    if isinstance(arg, (Atom, Quoted, Literal)):
        return bytes(arg)
    return None


def string_value(arg: object) -> bytes | None:
    """A quoted string or literal (not an atom)."""
    if isinstance(arg, (Quoted, Literal)):
        return bytes(arg)
    return None


def nstring(arg: object) -> tuple[bool, bytes | None]:
    """(ok, value); NIL gives (True, None)."""
    if is_nil(arg):
        return True, None
    v = astring(arg)
    return (v is not None), v


def number(arg: object, limit: int = MAX_UINT32) -> int | None:
    if type(arg) is Atom and _NUMBER.match(arg):
        n = int(arg)
        if n <= limit:
            return n
    return None


def mailbox(arg: object) -> Mailbox | None:
    raw = astring(arg)
    if raw is None:
        return None
    return make_mailbox(raw)


def make_mailbox(raw: bytes) -> Mailbox:
    """Decode a mailbox name; invalid modified UTF-7 keeps ``valid=False`` (Dovecot says NO,
    not BAD, so the handler decides)."""
    text = raw.decode("latin-1")
    if text.upper() == "INBOX":
        return Mailbox("INBOX", raw, True)
    try:
        if not mutf7.is_valid(text):
            raise mutf7.MUTF7Error(text)
        return Mailbox(mutf7.decode(text), raw, True)
    except (mutf7.MUTF7Error, ValueError):
        return Mailbox(text, raw, False)


def parse_seqset(arg: object, *, allow_saved: bool = True, uid: bool = False
                 ) -> SeqSet | None:
    """A sequence set (``1:3,5,7:*``, ``$``; an atom or, as Dovecot allows, a string), or
    None when invalid (0 is invalid). An empty string is the empty UID set."""
    raw = astring(arg)
    if raw is None:
        return None
    if not raw:
        return SeqSet() if uid else None
    return seqset_from_bytes(raw, allow_saved=allow_saved)


def seqset_from_bytes(text: bytes, *, allow_saved: bool = True) -> SeqSet | None:
    if text == b"$":
        return SeqSet((), saved=True) if allow_saved else None
    ranges = []
    for part in text.split(b","):
        if not _SEQ_RANGE.match(part):
            return None
        lo_s, _, hi_s = part.partition(b":")
        lo = STAR if lo_s == b"*" else int(lo_s)
        hi = lo if not hi_s else (STAR if hi_s == b"*" else int(hi_s))
        if (lo_s != b"*" and not 0 < lo <= MAX_UINT32) or \
                (hi_s and hi_s != b"*" and not 0 < hi <= MAX_UINT32):
            return None
        if STAR not in (lo, hi) and lo > hi:
            lo, hi = hi, lo
        ranges.append((lo, hi))
    return SeqSet(tuple(ranges))


def parse_date(arg: object) -> date | None:
    """``d-Mon-yyyy`` (atom or quoted); day overflow rolls over as in Dovecot."""
    raw = astring(arg)
    if raw is None:
        return None
    m = re.fullmatch(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})", raw)
    if not m:
        return None
    month = _MONTHS.get(m.group(2).decode().upper())
    if month is None:
        return None
    try:
        return date(int(m.group(3)), month, 1) + timedelta(days=int(m.group(1)) - 1)
    except (ValueError, OverflowError):
        return None


_DATE_TIME = re.compile(rb"( ?[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) "
                        rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ")
_ZONE = re.compile(rb"([+-])([0-9]{2})([0-9]{2})?")


def parse_date_time(raw: bytes) -> datetime | None:
    """APPEND's ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` -> an aware datetime, as leniently as
    Dovecot: the day may be `` 1`` or ``1``, out-of-range fields roll over (31-Feb is
    2-Mar), and a zone that is not ``±hhmm`` counts as UTC."""
    m = _DATE_TIME.match(raw)
    if not m:
        return None
    month = _MONTHS.get(m.group(2).decode().upper())
    if month is None:
        return None
    offset = timedelta()
    z = _ZONE.match(raw, m.end())
    if z:
        offset = timedelta(hours=int(z.group(2)), minutes=int(z.group(3) or 0))
        if z.group(1) == b"-":
            offset = -offset
    try:
        local = datetime(int(m.group(3)), month, 1) + timedelta(
            days=int(m.group(1).strip()) - 1, hours=int(m.group(4)), minutes=int(m.group(5)),
            seconds=int(m.group(6)))
        if abs(offset) < timedelta(hours=24):
            return local.replace(tzinfo=timezone(offset))
        return (local - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def parse_flag_list(arg: Arg) -> tuple[str, ...]:
    """A flag list (or a single flag atom): system flags canonical, keywords as sent."""
    items = arg if isinstance(arg, list) else [arg]
    out: list[str] = []
    for item in items:
        if type(item) is not Atom:
            raise SyntaxErr("Flags list contains non-atoms")
        if item.startswith(b"\\"):
            canon = SYSTEM_FLAGS.get(item.upper())
            if canon is None:
                raise SyntaxErr(f"Invalid system flag {item.upper().decode('latin-1')}")
            out.append(canon)
        else:
            out.append(item.decode("latin-1"))
    return tuple(out)


# -- FETCH ----------------------------------------------------------------------------------

_SIMPLE_FETCH = {"FLAGS", "UID", "ENVELOPE", "INTERNALDATE", "RFC822", "RFC822.HEADER",
                 "RFC822.SIZE", "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "MODSEQ",
                 "SAVEDATE", "X-GUID", "X-MAILBOX", "X-REAL-UID", "X-SAVEDATE", "PREVIEW",
                 "SNIPPET"}
_PREVIEW_MODIFIERS = {"LAZY", "LAZY=FUZZY", "FUZZY"}
_SECTION_TEXT = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"}
_BODY_KINDS = ("BODY.PEEK", "BODY", "BINARY.PEEK", "BINARY.SIZE", "BINARY")
_DIGITS = re.compile(rb"[0-9]*")


def parse_section(spec: bytes, *, binary: bool, fields: Sequence[Arg] | None = None
                  ) -> Section:
    """The part inside ``[...]`` (``1.2.HEADER.FIELDS``) plus the header-name list Dovecot's
    tokenizer gave separately; raises with Dovecot's texts."""
    kind = "BINARY" if binary else "BODY"
    bad = SyntaxErr(f"Invalid {kind}[..] section")
    part: list[int] = []
    text: str | None = None
    items = spec.split(b".") if spec else []
    i = 0
    while i < len(items) and items[i].isdigit():
        n = int(items[i])
        if n == 0 and part == []:
            raise bad
        part.append(n)
        i += 1
    if i < len(items):
        text = b".".join(items[i:]).decode("ascii", "replace").upper()
        if text not in _SECTION_TEXT or (text == "MIME" and not part):
            raise bad
    names: tuple[str, ...] = ()
    echo = ""
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        if not fields:
            raise bad
        upper: list[str] = []
        wire: list[str] = []
        for f in fields:
            if type(f) is Atom and not is_nil(f):
                name = f.decode("latin-1").upper()
                wire.append(name)
            elif isinstance(f, (Atom, Quoted, Literal)):
                name = f.decode("latin-1").upper()
                wire.append(imapwire.quoted(name.encode("latin-1")).decode("latin-1"))
            else:
                raise SyntaxErr(f"Invalid {kind}[..] parameter: Header list contains "
                                "non-strings")
            upper.append(name)
        names = tuple(upper)
        echo = " ".join(wire)
    elif fields is not None:
        raise bad
    return Section(tuple(part), text, names, echo)


def _partial(tail: bytes, kind: str) -> tuple[int, int | None] | None:
    """``<start[.length]>`` after ``]``, read left to right as Dovecot does."""
    if not tail:
        return None
    if not tail.startswith(b"<"):
        raise SyntaxErr(f"Invalid {kind}[..] parameter: Unexpected data after ']'")
    m = _DIGITS.match(tail, 1)
    assert m is not None
    if not m.group() or int(m.group()) > MAX_UINT63:
        raise SyntaxErr(f"Invalid {kind}[..] parameter: Too big partial start")
    start = int(m.group())
    pos = m.end()
    length: int | None = None
    if tail[pos:pos + 1] == b".":
        m = _DIGITS.match(tail, pos + 1)
        assert m is not None
        if not m.group() or int(m.group()) > MAX_UINT63:
            raise SyntaxErr(f"Invalid {kind}[..] parameter: Too big partial end")
        length = int(m.group())
        pos = m.end()
    if tail[pos:pos + 1] != b">":
        raise SyntaxErr(f"Invalid {kind}[..] parameter: Missing '>' in partial")
    if pos + 1 < len(tail):
        raise SyntaxErr(f"Invalid {kind}[..] parameter: Unexpected data after '>'")
    return (start, length)


def parse_fetch_att(arg: Arg) -> FetchAtt:
    """One FETCH item that is a single token; cached, as clients repeat the same few."""
    if type(arg) is not Atom:
        raise SyntaxErr("Invalid arguments" if not isinstance(arg, bytes)
                        else "Unknown parameter: " + arg.decode("latin-1").upper())
    return _fetch_att(bytes(arg))


_ITEM_KEY = re.compile(r"[A-Z0-9-]+")


def _body_kind(name: str) -> tuple[str, bool] | None:
    """(base name, peek) of ``BODY.PEEK[…``-style items; None for other items. Like
    Dovecot, anything named ``BODY.…``/``BINARY.…`` goes to the body parser, which wants
    ``.PEEK``/``.SIZE`` and then ``[``."""
    m = _ITEM_KEY.match(name)
    key = m.group() if m else ""
    if key not in ("BODY", "BINARY") or name in _SIMPLE_FETCH:
        return None
    rest = name[len(key):]
    kind, peek = key, False
    if rest.startswith(".PEEK"):
        peek, rest = True, rest[5:]
    elif key == "BINARY" and rest.startswith(".SIZE"):
        kind, rest = "BINARY.SIZE", rest[5:]
    if not rest.startswith("["):
        raise SyntaxErr(f"Invalid {key}[..] parameter: Missing '['")
    return kind, peek


@functools.lru_cache(maxsize=256)
def _fetch_att(arg: bytes) -> FetchAtt:
    name = arg.decode("latin-1").upper()
    if name in _SIMPLE_FETCH:
        return FetchAtt(name)
    kind = _body_kind(name)
    if kind is None:
        # Dovecot finds the handler by the name up to the first non-name octet; most
        # handlers ignore what follows (ENVELOPE.X is ENVELOPE), RFC822 checks it
        key = _ITEM_KEY.match(name)
        head = key.group() if key else ""
        if head == "RFC822":
            raise SyntaxErr(f"Unknown parameter {name}")
        if head in _SIMPLE_FETCH and head != name:
            return FetchAtt(head)
        raise SyntaxErr(f"Unknown parameter: {name}")
    base, peek = kind
    label = "BINARY" if base.startswith("BINARY") else "BODY"
    inner = arg[arg.index(b"[") + 1:]
    spec, close, tail = inner.partition(b"]")
    if not close:
        raise SyntaxErr(f"Invalid {label}[..] parameter: Missing ']'")
    section = parse_section(spec, binary=label == "BINARY")
    # BINARY.SIZE ignores whatever follows its "]"
    partial = None if base == "BINARY.SIZE" else _partial(tail, label)
    return FetchAtt(base, section, partial, peek)


def _fetch_item(items: Sequence[Arg], i: int) -> tuple[FetchAtt, int]:
    """The FETCH item at ``items[i]``. As in Dovecot, a ``BODY[…`` item followed by a list
    takes that list as its header names and the next token (``]…``) as the rest of it:
    Dovecot's tokenizer leaves ``BODY[HEADER.FIELDS (A B)]<0.5>`` as three tokens."""
    arg = items[i]
    nxt = items[i + 1] if i + 1 < len(items) else None
    if isinstance(nxt, list) and nxt and isinstance(arg, Atom) and \
            arg.upper() in (b"PREVIEW", b"SNIPPET"):
        options = []
        for m in nxt:
            if not isinstance(m, Atom):
                raise SyntaxErr("Invalid PREVIEW modifier")
            if m.upper().decode("latin-1") not in _PREVIEW_MODIFIERS:
                raise SyntaxErr(f"'{m.decode('latin-1')}' is not a supported PREVIEW modifier")
            options.append(m.upper().decode("latin-1"))
        return FetchAtt(arg.upper().decode(), options=tuple(options)), i + 2
    if isinstance(arg, Atom) and arg.find(b"[") >= 0:
        name = arg.decode("latin-1").upper()
        kind = _body_kind(name)
        if kind is not None:
            label = "BINARY" if kind[0].startswith("BINARY") else "BODY"
            fields = items[i + 1] if i + 1 < len(items) else None
            if isinstance(fields, list):
                tail = items[i + 2] if i + 2 < len(items) else None
                if not isinstance(tail, Atom) or not tail.startswith(b"]"):
                    raise SyntaxErr(f"Invalid {label}[..] parameter: Missing ']'")
                if any(isinstance(f, list) for f in fields):
                    raise SyntaxErr(f"Invalid {label}[..] parameter: Header list contains "
                                    "non-strings")
                if not (name.endswith(".FIELDS") or name.endswith(".FIELDS.NOT")):
                    raise SyntaxErr(f"Invalid {label}[..] section")
                key = tuple((type(f) is Atom, bytes(f)) for f in fields)  # type: ignore[arg-type]
                return _header_fields_att(bytes(arg), key, bytes(tail)), i + 3
            if arg.find(b"]") < 0:
                raise SyntaxErr(f"Invalid {label}[..] parameter: Missing ']'")
    return parse_fetch_att(arg), i + 1


@functools.lru_cache(maxsize=256)
def _header_fields_att(arg: bytes, fields: tuple[tuple[bool, bytes], ...], tail: bytes
                       ) -> FetchAtt:
    """``BODY.PEEK[HEADER.FIELDS (…)]<…>`` from its three tokens (``fields`` as (is-atom,
    octets) pairs); cached like single-token items."""
    name = arg.decode("latin-1").upper()
    kind = _body_kind(name)
    assert kind is not None
    base, peek = kind
    label = "BINARY" if base.startswith("BINARY") else "BODY"
    spec = arg[arg.index(b"[") + 1:]
    typed: list[Arg] = [Atom(v) if is_atom else Quoted(v) for is_atom, v in fields]
    section = parse_section(spec, binary=label == "BINARY", fields=typed)
    partial = None if base == "BINARY.SIZE" else _partial(tail[1:], label)
    return FetchAtt(base, section, partial, peek)


def _parse_fetch(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Fetch:
    # the shape first, as Dovecot: set, item or list, then nothing or a modifier list
    if len(args) < 2 or type(args[0]) is not Atom or \
            not (isinstance(args[1], list) or (type(args[1]) is Atom and not is_nil(args[1]))) \
            or (len(args) > 2 and not isinstance(args[2], list)):
        raise SyntaxErr("Invalid arguments")
    seqset = parse_seqset(args[0])
    if seqset is None:
        raise SyntaxErr("Invalid uidset" if uid else "Invalid messageset")
    spec = args[1]
    atts: list[FetchAtt] = []
    rest_at = 2
    if isinstance(spec, list):
        if not spec:
            raise SyntaxErr("FETCH list is empty")
        j = 0
        while j < len(spec):
            if type(spec[j]) is not Atom:
                raise SyntaxErr("FETCH list contains non-atoms")
            att, j = _fetch_item(spec, j)
            atts.append(att)
    else:
        macro = _atom_upper(spec)
        if macro in FETCH_MACROS:
            atts = [FetchAtt(n) for n in FETCH_MACROS[macro]]
        else:
            att, rest_at = _fetch_item(args, 1)
            atts = [att]
    changedsince = None
    vanished = False
    if rest_at < len(args) and isinstance(args[rest_at], list):
        mods = args[rest_at]
        assert isinstance(mods, list)
        i = 0
        while i < len(mods):
            if type(mods[i]) is not Atom:
                raise SyntaxErr("FETCH modifiers contain non-atoms")
            mod = _atom_upper(mods[i])
            if mod == "CHANGEDSINCE":
                changedsince = number(mods[i + 1] if i + 1 < len(mods) else None, MAX_UINT63)
                if changedsince is None:
                    raise SyntaxErr("Invalid CHANGEDSINCE modseq")
                i += 2
            elif mod == "VANISHED" and uid:
                vanished = True
                i += 1
            else:
                raise SyntaxErr("Unknown FETCH modifier")
        if vanished and "QRESYNC" not in enabled:
            raise SyntaxErr("QRESYNC not enabled")
        if vanished and changedsince is None:
            raise SyntaxErr("VANISHED used without CHANGEDSINCE")
    if uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, FetchAtt("UID"))
    if changedsince is not None and not any(a.name == "MODSEQ" for a in atts):
        atts.append(FetchAtt("MODSEQ"))
    return Fetch(seqset, tuple(atts), changedsince, vanished)


# -- STORE ----------------------------------------------------------------------------------

def _parse_store(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Store:
    if not args or type(args[0]) is not Atom:
        raise SyntaxErr("Invalid arguments")
    seqset = parse_seqset(args[0])
    if seqset is None:
        raise SyntaxErr("Invalid uidset" if uid else "Invalid messageset")
    if len(args) < 2:
        raise SyntaxErr("Invalid arguments")
    i = 1
    unchangedsince = None
    if isinstance(args[1], list):
        mods = args[1]
        j = 0
        while j < len(mods):
            # name/value pairs
            if j + 1 >= len(mods) or type(mods[j]) is not Atom:
                raise SyntaxErr("Invalid STORE modifiers")
            if _atom_upper(mods[j]) != "UNCHANGEDSINCE":
                raise SyntaxErr("Unknown STORE modifier")
            unchangedsince = number(mods[j + 1], MAX_UINT63)
            if unchangedsince is None:
                raise SyntaxErr("Invalid modseq")
            j += 2
        i = 2
    item = _atom_upper(args[i]) if i < len(args) else None
    if item is None:
        raise SyntaxErr("Invalid arguments")
    mode = ""
    if item[:1] in ("+", "-"):
        mode, item = item[0], item[1:]
    silent = item.endswith(".SILENT")
    if silent:
        item = item[:-7]
    if item != "FLAGS":
        raise SyntaxErr("Invalid arguments")
    rest = list(args[i + 1:])
    if rest and isinstance(rest[0], list):  # a list: what follows it is not read
        flags = parse_flag_list(rest[0])
    else:
        flags = parse_flag_list(rest)
    return Store(seqset, mode, silent, flags, unchangedsince)


# -- SEARCH ---------------------------------------------------------------------------------

_FLAG_KEYS = {"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT",
              "SEEN", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN",
              "SAVEDATESUPPORTED"}
_STRING_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "X-MAILBOX",
                "X-GUID"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "SAVEDBEFORE",
              "SAVEDON", "SAVEDSINCE"}
_SIZE_KEYS = {"LARGER", "SMALLER"}
_INTERVAL_KEYS = {"OLDER", "YOUNGER"}
_SEQSET_START = frozenset(b"0123456789*$")
_SEARCH_RETURNS = {"MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL"}


class _SearchParser:
    def __init__(self, args: Sequence[Arg], charset: str | None) -> None:
        self.args = args
        self.charset = charset

    def program(self, args: Sequence[Arg]) -> SearchKey:
        keys: list[SearchKey] = []
        i = 0
        while i < len(args):
            key, i = self.key(args, i)
            keys.append(key)
        if len(keys) == 1:
            return keys[0]
        return SearchKey("AND", children=tuple(keys))

    def key(self, args: Sequence[Arg], i: int) -> tuple[SearchKey, int]:
        arg = args[i]
        if isinstance(arg, list):
            if not arg:
                raise SyntaxErr("No search parameters inside list")
            sub = self.program(arg)
            if sub.kind != "AND":
                sub = SearchKey("AND", children=(sub,))
            return sub, i + 1
        if type(arg) is not Atom:
            raise SyntaxErr("Unexpected string as search key: " + bytes(arg).decode("latin-1")
                            if isinstance(arg, bytes) else "Invalid arguments")
        name = arg.decode("latin-1").upper()
        i += 1

        def param(at: int | None = None) -> Arg:
            at = i if at is None else at
            if at >= len(args):
                raise SyntaxErr(f"Missing parameter for search key (for search key: {name})")
            if isinstance(args[at], list):
                raise SyntaxErr(f"Unexpected ( (for search key: {name})")
            return args[at]

        if name in _FLAG_KEYS:
            return SearchKey(name), i
        if name in _STRING_KEYS:
            v = astring(param())
            if v is None:
                raise SyntaxErr("Invalid arguments")
            return SearchKey(name, self.text(v)), i + 1
        if name in _DATE_KEYS:
            d = parse_date(param())
            if d is None:
                raise SyntaxErr("Invalid search date parameter")
            return SearchKey(name, d), i + 1
        if name in _SIZE_KEYS:
            n = number(param(), MAX_UINT63)
            if n is None:
                raise SyntaxErr("Invalid search size parameter")
            return SearchKey(name, n), i + 1
        if name in _INTERVAL_KEYS:
            n = number(param())
            if not n:
                raise SyntaxErr("Invalid search interval parameter")
            return SearchKey(name, n), i + 1
        if name in ("KEYWORD", "UNKEYWORD"):
            v = astring(param())
            if v is None:
                raise SyntaxErr("Invalid arguments")
            return SearchKey(name, v.decode("latin-1")), i + 1
        if name == "HEADER":
            h = astring(param())
            v = astring(param(i + 1))
            if h is None or v is None:
                raise SyntaxErr("Invalid arguments")
            return SearchKey(name, (h.decode("latin-1"), self.text(v))), i + 2
        if name == "UID":
            s = parse_seqset(param(), uid=True)
            if s is None:
                raise SyntaxErr("Invalid UID messageset")
            return SearchKey("UID", s), i + 1
        if name == "FUZZY":
            child, j = self.key(args, i) if i < len(args) else self._missing()
            return SearchKey("FUZZY", children=(child,)), j
        if name == "NOT":
            child, j = self.key(args, i) if i < len(args) else self._missing()
            return SearchKey("NOT", children=(child,)), j
        if name == "OR":
            a, j = self.key(args, i) if i < len(args) else self._missing()
            b, k = self.key(args, j) if j < len(args) else self._missing()
            return SearchKey("OR", children=(a, b)), k
        if name == "MODSEQ":
            entry = None
            p = param()
            if isinstance(p, (Quoted, Literal)) and p[:7].lower() == b"/flags/":
                ename = bytes(p)
                flag = ename[7:]
                if flag.startswith(b"\\") and flag.upper() not in SYSTEM_FLAGS:
                    raise SyntaxErr("Invalid MODSEQ system flag")
                etype = _atom_upper(param(i + 1))
                if etype not in ("PRIV", "SHARED", "ALL"):
                    raise SyntaxErr("Invalid MODSEQ type")
                entry = ModSeqEntry(ename.decode("latin-1"), etype.lower())
                i += 2
                p = param()
            n = number(p, MAX_UINT63)
            if n is None:
                raise SyntaxErr("Invalid MODSEQ value")
            return SearchKey("MODSEQ", (entry, n)), i + 1
        s = seqset_from_bytes(arg)
        if s is not None:
            return SearchKey("SEQSET", s), i
        if arg[0] in _SEQSET_START:
            raise SyntaxErr("Invalid messageset")
        raise SyntaxErr(f"Unknown argument {name}")

    def _missing(self) -> tuple[SearchKey, int]:
        raise SyntaxErr("Missing argument")

    def text(self, v: bytes) -> str:
        """Search text in the command's charset (UTF-8 when none or unknown: the handler
        answers ``NO [BADCHARSET]`` for an unknown one, see ``charset_supported``)."""
        codec = "utf-8"
        if self.charset and charset_supported(self.charset):
            codec = self.charset
        return v.decode(codec, "replace")


def charset_supported(name: str) -> bool:
    """Whether a SEARCH/SORT/THREAD charset can be converted (else ``NO [BADCHARSET]``)."""
    try:
        codecs.lookup(name)
    except (LookupError, ValueError):
        return False
    return True


def _search_returns(args: Sequence[Arg], i: int) -> tuple[tuple[str, ...] | None, int]:
    if i + 1 < len(args) and _atom_upper(args[i]) == "RETURN" and isinstance(args[i + 1], list):
        opts: list[str] = []
        for o in args[i + 1]:  # type: ignore[union-attr]
            name = _atom_upper(o)
            if name is None:
                raise SyntaxErr("SEARCH return options contain non-atoms")
            if name not in _SEARCH_RETURNS or name == "PARTIAL":
                raise SyntaxErr("Unknown SEARCH return option")
            if name not in opts:
                opts.append(name)
        return tuple(opts), i + 2
    return None, i


def _search_program(args: Sequence[Arg], i: int, *, charset_required: bool
                    ) -> tuple[str | None, SearchKey]:
    charset: str | None = None
    if charset_required:
        if i >= len(args) or astring(args[i]) is None:
            raise SyntaxErr("Invalid charset argument")
        charset = astring(args[i]).decode("latin-1")  # type: ignore[union-attr]
        i += 1
    elif i < len(args) and _atom_upper(args[i]) == "CHARSET":
        if i + 1 >= len(args) or astring(args[i + 1]) is None:
            raise SyntaxErr("Invalid charset argument")
        charset = astring(args[i + 1]).decode("latin-1")  # type: ignore[union-attr]
        i += 2
    if i >= len(args):
        raise SyntaxErr("Missing search parameters")
    p = _SearchParser(args, charset)
    return charset, p.program(args[i:])


def _parse_search(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Search:
    returns, i = _search_returns(args, 0)
    charset, key = _search_program(args, i, charset_required=False)
    return Search(key, charset, returns)


_SORT_KEYS = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
              "DISPLAYTO"}


def _parse_sort(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Sort:
    returns, i = _search_returns(args, 0)
    if i >= len(args) or not isinstance(args[i], list):
        raise SyntaxErr("Invalid sort argument")
    crit: list[tuple[bool, str]] = []
    reverse = False
    stray = False
    for item in args[i]:  # type: ignore[union-attr]
        raw = astring(item)
        if raw is None:  # the list ends here for Dovecot; a pending REVERSE is worse
            stray = True
            break
        name = raw.decode("latin-1").upper()
        if name == "REVERSE":
            reverse = True
            continue
        if name not in _SORT_KEYS:
            raise SyntaxErr("Unknown sort argument: " + raw.decode("latin-1"))
        crit.append((reverse, name))
        reverse = False
    if reverse:
        raise SyntaxErr("Sort list ends with REVERSE")
    if stray:
        raise SyntaxErr("Invalid sort list argument")
    if not crit:
        raise SyntaxErr("Empty sort program")
    charset, key = _search_program(args, i + 1, charset_required=True)
    return Sort(tuple(crit), charset or "", key, returns)


def _parse_thread(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Thread:
    if len(args) < 2 or astring(args[0]) is None or astring(args[1]) is None:
        raise SyntaxErr("Invalid arguments")
    alg = astring(args[0]).decode("latin-1").upper()  # type: ignore[union-attr]
    if alg not in ("REFERENCES", "REFS", "ORDEREDSUBJECT"):
        raise SyntaxErr("Unknown thread algorithm")
    charset, key = _search_program(args, 1, charset_required=True)
    return Thread(alg, charset or "", key)


# -- mailbox commands -----------------------------------------------------------------------

def _parse_select(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Select:
    mb = mailbox(args[0]) if args else None
    if mb is None:
        raise SyntaxErr("Invalid arguments")
    condstore = False
    qresync = None
    if len(args) > 1 and isinstance(args[1], list):
        params = args[1]
        j = 0
        while j < len(params):
            name = _atom_upper(params[j])
            if name == "CONDSTORE":
                condstore = True
                j += 1
            elif name == "QRESYNC":
                if j + 1 >= len(params) or not isinstance(params[j + 1], list):
                    raise SyntaxErr("QRESYNC parameters missing")
                if "QRESYNC" not in enabled:
                    raise SyntaxErr("QRESYNC not enabled")
                qresync = _parse_qresync(params[j + 1])
                j += 2
            else:
                raise SyntaxErr("Unknown FETCH modifier")
    return Select(mb, condstore, qresync)


def _parse_qresync(p: object) -> QResync:
    bad = SyntaxErr("Invalid QRESYNC parameters")
    if not isinstance(p, list) or len(p) < 2:
        raise bad
    uidvalidity = number(p[0])
    modseq = number(p[1], MAX_UINT63)
    if uidvalidity is None or modseq is None:
        raise bad
    known = None
    seq_match = None
    rest = p[2:]
    if rest and not isinstance(rest[0], list):
        known = parse_seqset(rest[0], allow_saved=False)
        if known is None:
            raise bad
        rest = rest[1:]
    if rest:
        m = rest[0]
        bad_match = SyntaxErr("Invalid QRESYNC known-uid-set")
        if not isinstance(m, list) or len(m) != 2 or len(rest) > 1:
            raise bad_match
        a = parse_seqset(m[0], allow_saved=False)
        b = parse_seqset(m[1], allow_saved=False)
        if a is None or b is None:
            raise bad_match
        seq_match = (a, b)
    return QResync(uidvalidity, modseq, known, seq_match)


def _parse_mailbox_only(args: Sequence[Arg], uid: bool,
                       enabled: frozenset[str] = _NONE) -> MailboxArg:
    if not args:
        raise SyntaxErr("Missing arguments")
    mb = mailbox(args[0])
    if mb is None:
        raise SyntaxErr("Invalid arguments")
    return MailboxArg(mb)


def _parse_rename(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Rename:
    if len(args) < 2:
        raise SyntaxErr("Missing arguments")
    a, b = mailbox(args[0]), mailbox(args[1])
    if a is None or b is None:
        raise SyntaxErr("Invalid arguments")
    return Rename(a, b)


_LIST_SELECT = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS"}
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ",
                "SIZE", "X-SIZE", "X-GUID")
"""What Dovecot 2.3 answers, in the order its STATUS reply uses."""


def _status_items(arg: object) -> tuple[str, ...]:
    if not isinstance(arg, list):
        raise SyntaxErr("Invalid arguments")
    if not arg:
        raise SyntaxErr("Empty status list")
    items: list[str] = []
    for a in arg:
        name = _atom_upper(a)
        if name is None or name not in STATUS_ITEMS:
            raise SyntaxErr("Invalid status item " + (name or "")
                            if name is not None else "Status list contains non-atoms")
        if name not in items:
            items.append(name)
    return tuple(items)


def _decode_pattern(raw: bytes) -> str:
    text = raw.decode("latin-1")
    try:
        return mutf7.decode(text)
    except (mutf7.MUTF7Error, ValueError):
        return text


def _parse_list(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = frozenset(),
                lsub: bool = False) -> List:
    i = 0
    selection: set[str] = set()
    extended = False
    if not lsub and args and isinstance(args[0], list):
        extended = True
        for o in args[0]:
            name = _atom_upper(o)
            if name not in _LIST_SELECT:
                raise SyntaxErr("Unknown select options")
            selection.add(name)
        i = 1
        if "RECURSIVEMATCH" in selection and len(selection) == 1:
            raise SyntaxErr("RECURSIVEMATCH must not be the only selection")
    ref = astring(args[i]) if i < len(args) else None
    if ref is None:
        raise SyntaxErr("Invalid reference")
    i += 1
    patterns: list[str] = []
    if i < len(args) and isinstance(args[i], list):
        extended = True
        for p in args[i]:  # type: ignore[union-attr]
            v = astring(p)
            if v is None:
                raise SyntaxErr("Invalid pattern list")
            patterns.append(_decode_pattern(v))
    else:
        v = astring(args[i]) if i < len(args) else None
        if v is None:
            raise SyntaxErr("Invalid pattern")
        patterns.append(_decode_pattern(v))
    i += 1
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if not lsub and i + 1 < len(args) and _atom_upper(args[i]) == "RETURN" and \
            isinstance(args[i + 1], list):
        extended = True
        opts = args[i + 1]
        j = 0
        while j < len(opts):  # type: ignore[arg-type]
            name = _atom_upper(opts[j])  # type: ignore[index]
            if name not in _LIST_RETURN:
                raise SyntaxErr("Unknown return options")
            if name == "STATUS":
                if j + 1 >= len(opts) or not isinstance(opts[j + 1], list):  # type: ignore
                    raise SyntaxErr("Unknown return options")
                status_items = _status_items(opts[j + 1])  # type: ignore[index]
                j += 1
            returns.add(name)
            j += 1
        i += 2
    if i < len(args):
        raise SyntaxErr("Extra arguments")
    return List(_decode_pattern(ref), tuple(patterns), frozenset(selection),
                frozenset(returns), status_items, extended, lsub)


def _parse_lsub(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> List:
    return _parse_list(args, uid, enabled, lsub=True)


def _parse_status(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Status:
    if len(args) < 2:
        raise SyntaxErr("Missing arguments")
    mb = mailbox(args[0])
    if mb is None:
        raise SyntaxErr("Invalid arguments")
    return Status(mb, _status_items(args[1]))


def _parse_copy(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Copy:
    if len(args) < 2:
        raise SyntaxErr("Missing arguments")
    if astring(args[0]) is None or astring(args[1]) is None:
        raise SyntaxErr("Invalid arguments")
    seqset = parse_seqset(args[0], uid=uid)
    if seqset is None:
        raise SyntaxErr("Invalid uidset" if uid else "Invalid messageset")
    mb = mailbox(args[1])
    if mb is None:
        raise SyntaxErr("Invalid arguments")
    return Copy(seqset, mb)


def _parse_expunge(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Expunge:
    if not uid:
        return Expunge(None)
    if not args:
        raise SyntaxErr("Missing arguments")
    s = parse_seqset(args[0], uid=True)
    if s is None:
        raise SyntaxErr("Invalid uidset")
    return Expunge(s)


# -- session commands -----------------------------------------------------------------------

def _parse_login(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Login:
    if len(args) != 2:
        raise SyntaxErr("Invalid arguments")
    u, p = astring(args[0]), astring(args[1])
    if u is None or p is None:
        raise SyntaxErr("Invalid arguments")
    return Login(u, p)


def _parse_authenticate(args: Sequence[Arg], uid: bool,
                       enabled: frozenset[str] = _NONE) -> Authenticate:
    raw = astring(args[0]) if args else None
    if raw is None:
        raise SyntaxErr("Invalid arguments")
    mech = raw.decode("latin-1").upper()
    ir = None
    if len(args) > 1:
        ir = astring(args[1])
        if ir is None:
            raise SyntaxErr("Invalid arguments")
    return Authenticate(mech, ir)


def _parse_enable(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Enable:
    caps = []
    for a in args:
        name = _atom_upper(a)
        if name is None:
            raise SyntaxErr("Invalid arguments")
        caps.append(name)
    return Enable(tuple(caps))


def _parse_id(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Id:
    if not args or not isinstance(args[0], list):
        return Id(None)
    lst = args[0]
    params: list[tuple[bytes, bytes | None]] = []
    for j in range(0, len(lst) - 1, 2):
        k = string_value(lst[j]) or astring(lst[j])
        ok, v = nstring(lst[j + 1])
        if k is None or not ok:
            continue
        params.append((k, v))
    return Id(tuple(params))


def _parse_compress(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> Compress:
    mech = _atom_upper(args[0]) if args else None
    if mech is None:
        raise SyntaxErr("Invalid arguments")
    return Compress(mech)


def _no_args(args: Sequence[Arg], uid: bool, enabled: frozenset[str] = _NONE) -> None:
    return None


Parser = Callable[[Sequence[Arg], bool, frozenset[str]], object]

COMMANDS: dict[str, Parser] = {
    "CAPABILITY": _no_args, "NOOP": _no_args, "LOGOUT": _no_args, "STARTTLS": _no_args,
    "CHECK": _no_args, "CLOSE": _no_args, "UNSELECT": _no_args, "NAMESPACE": _no_args,
    "IDLE": _no_args,
    "LOGIN": _parse_login, "AUTHENTICATE": _parse_authenticate,
    "SELECT": _parse_select, "EXAMINE": _parse_select,
    "CREATE": _parse_mailbox_only, "DELETE": _parse_mailbox_only,
    "SUBSCRIBE": _parse_mailbox_only, "UNSUBSCRIBE": _parse_mailbox_only,
    "RENAME": _parse_rename, "LIST": _parse_list, "LSUB": _parse_lsub,
    "STATUS": _parse_status, "ENABLE": _parse_enable, "ID": _parse_id,
    "FETCH": _parse_fetch, "STORE": _parse_store, "SEARCH": _parse_search,
    "COPY": _parse_copy, "MOVE": _parse_copy, "EXPUNGE": _parse_expunge,
    "SORT": _parse_sort, "THREAD": _parse_thread, "COMPRESS": _parse_compress,
}
ARG_LIMITS = {"COPY": 2, "MOVE": 2, "UID COPY": 2, "UID MOVE": 2, "RENAME": 2, "DELETE": 1,
              "CREATE": 1, "SUBSCRIBE": 1, "UNSUBSCRIBE": 1, "STATUS": 2, "UID EXPUNGE": 1}
"""Commands of which Dovecot reads only so many arguments (``COPY 1 INBOX )`` is fine)."""
NO_ARG_COMMANDS = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE",
                             "UNSELECT", "NAMESPACE", "IDLE", "EXPUNGE"})
"""Commands whose arguments Dovecot never reads (``NOOP (`` is fine); UID EXPUNGE is not."""
LOGIN_COMMANDS = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "LOGIN",
                            "AUTHENTICATE", "ID", "ENABLE"})
"""What Dovecot's imap-login knows before authentication."""
MAIL_COMMANDS = frozenset(COMMANDS) - {"LOGIN", "AUTHENTICATE", "STARTTLS", "COMPRESS"} \
    | {"APPEND"}
"""What the IMAP mail process knows after login (add COMPRESS when imap_zlib is on)."""
UID_COMMANDS = frozenset({"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT",
                          "THREAD"})
APPEND = "APPEND"


def parse_command(name: str, args: Sequence[Arg], uid: bool = False,
                  enabled: frozenset[str] = _NONE) -> object:
    """Typed arguments for ``name`` (already upper-case) or ``SyntaxErr``. ``enabled`` holds
    the ENABLEd extensions (QRESYNC changes what is valid). A command this module has no
    grammar for (one a server adds to its command set, e.g. GETQUOTAROOT) gets its generic
    tokens."""
    parser = COMMANDS.get(name)
    if parser is None:
        return list(args)
    return parser(args, uid, enabled)


def parse_append_message(group: Sequence[Arg]) -> tuple[tuple[str, ...], datetime | None]:
    """Flags and internal date that precede one APPEND message literal."""
    flags: tuple[str, ...] = ()
    when: datetime | None = None
    i = 0
    if i < len(group) and isinstance(group[i], list):
        flags = parse_flag_list(group[i])
        i += 1
    if i < len(group):
        raw = string_value(group[i])
        if raw is None:
            raise SyntaxErr("Invalid arguments")
        when = parse_date_time(raw)
        if when is None:
            raise SyntaxErr("Invalid internal date")
        i += 1
    if i < len(group):
        raise SyntaxErr("Invalid arguments")
    return flags, when


__all__ = ["APPEND", "ARG_LIMITS", "COMMANDS", "LOGIN_COMMANDS", "MAIL_COMMANDS",
           "NO_ARG_COMMANDS", "UID_COMMANDS", "Append", "Authenticate", "Compress", "Copy",
           "Enable", "Expunge", "Fetch", "Id", "List", "Login", "MailboxArg", "Rename",
           "Search", "Select", "Sort", "Status", "Store", "Thread", "charset_supported",
           "make_mailbox", "parse_append_message", "parse_command", "parse_date",
           "parse_date_time", "parse_seqset", "seqset_from_bytes"]
