"""``coteadm mailbox list|status|create|delete|rename``, ``fetch`` and ``expunge``, run as the user.

The user is looked up over auth-userdb and resolved exactly as a mail process does
(``cote.mailproc.userdb.lookup_user`` + ``cote.mailproc.mailuser.resolve``); the work runs in a
forked child that drops to the user's uid/gid before opening the store
(``cote.storage.namespaces.Namespaces``). Output and exit codes are doveadm's: mailbox names
one per line, ``status`` as ``INBOX messages=2 uidnext=3`` (fields in doveadm's order),
``fetch`` through the pager formatter, ``doveadm(user): Error: ...`` texts with 65 (exists),
67 (no such user), 68 (no such mailbox), 64 (bad name), 75 (temporary failure).

Search queries understood: ALL, SEEN, UNSEEN, DELETED, UNDELETED, FLAGGED, UNFLAGGED, NEW, OLD,
RECENT, ``UID <set>``, a sequence set, BEFORE/SINCE/ON and SAVEDBEFORE/SAVEDSINCE/SAVEDON
``<date>`` (IMAP dates, or ``<n>d``/``<n>h`` intervals, or a unix time), all AND-ed.
"""

from __future__ import annotations

import datetime
import getopt
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from email.parser import BytesHeaderParser

from cote import mutf7
from cote.cli.adm_auth import AuthConnError, MasterClient
from cote.cli.adm_print import HIDE_TITLE, Output, Printer
from cote.config import Config
from cote.mailproc.mailuser import MailUserError, drop_privileges, resolve
from cote.mailproc.userdb import UserdbError, UserNotFound, lookup_user
from cote.storage import flags as flagbits
from cote.storage.api import Mailbox
from cote.storage.errors import (
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    StorageError,
)
from cote.storage.namespaces import Namespaces

COMMANDS = ("mailbox", "fetch", "expunge")
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_NOTFOUND = 68
EX_TEMPFAIL = 75
STATUS_FIELDS = ("messages", "recent", "uidnext", "uidvalidity", "unseen", "highestmodseq",
                 "vsize")
TOTAL_FIELDS = ("messages", "recent", "unseen", "vsize")
FETCH_FIELDS = ("user", "mailbox", "seq", "uid", "flags", "size.physical", "size.virtual",
                "date.received", "date.saved", "date.received.unixtime",
                "date.saved.unixtime")
FETCH_HELP = ("Available fetch fields: hdr.<name> body.<section> binary.<section> user "
              "mailbox mailbox-guid seq uid guid flags modseq hdr body body.preview "
              "body.snippet text text.utf8 size.physical size.virtual date.received date.sent "
              "date.saved date.received.unixtime date.sent.unixtime date.saved.unixtime "
              "imap.envelope imap.body imap.bodystructure pop3.uidl pop3.order refcount "
              "storageid")


class UsageError(Exception):
    """Bad arguments: (text, exit code)."""

    def __init__(self, text: str, code: int = EX_USAGE) -> None:
        super().__init__(text)
        self.code = code


def _code(e: StorageError) -> int:
    if isinstance(e, MailboxNotFound):
        return EX_NOTFOUND
    if isinstance(e, MailboxExists):
        return EX_DATAERR
    if isinstance(e, InvalidName):
        return EX_USAGE
    if e.code == "CANNOT":
        return EX_DATAERR
    return EX_TEMPFAIL


# -- search ------------------------------------------------------------------------------------

Pred = Callable[[int, int, int, float], bool]  # (seq, uid, flags, saved_time)


def _uid_set(text: str, highest: int) -> Callable[[int], bool]:
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        a = highest if lo == "*" else int(lo)
        b = a if not hi else (highest if hi == "*" else int(hi))
        ranges.append((min(a, b), max(a, b)))
    return lambda n: any(a <= n <= b for a, b in ranges)


def _date(text: str) -> float:
    m = re.fullmatch(r"(\d+)([smhdw]|mins?|hours?|days?|weeks?)?", text.lower())
    if m and m.group(2):
        unit = m.group(2)[0]
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return time.time() - int(m.group(1)) * mult
    if m:
        return float(m.group(1))
    for fmt in ("%d-%b-%Y", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise UsageError(f"Invalid search date parameter: {text}", EX_TEMPFAIL)


def parse_query(words: Sequence[str], highest_uid: int = 0) -> tuple[str | None, list[str]]:
    """Split ``mailbox X`` from the rest and check the rest; returns (mailbox, criteria)."""
    mailbox: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w.lower() == "mailbox" and i + 1 < len(words):
            mailbox = words[i + 1]
            i += 2
            continue
        rest.append(w)
        i += 1
    _compile(rest, 0)  # validates
    return mailbox, rest


_SIMPLE: dict[str, Pred] = {
    "all": lambda s, u, f, t: True,
    "seen": lambda s, u, f, t: bool(f & flagbits.SEEN),
    "unseen": lambda s, u, f, t: not f & flagbits.SEEN,
    "deleted": lambda s, u, f, t: bool(f & flagbits.DELETED),
    "undeleted": lambda s, u, f, t: not f & flagbits.DELETED,
    "flagged": lambda s, u, f, t: bool(f & flagbits.FLAGGED),
    "unflagged": lambda s, u, f, t: not f & flagbits.FLAGGED,
    "answered": lambda s, u, f, t: bool(f & flagbits.ANSWERED),
    "unanswered": lambda s, u, f, t: not f & flagbits.ANSWERED,
    "draft": lambda s, u, f, t: bool(f & flagbits.DRAFT),
    "undraft": lambda s, u, f, t: not f & flagbits.DRAFT,
}


def _by_uid(test: Callable[[int], bool]) -> Pred:
    return lambda s, u, f, t: test(u)


def _by_seq(test: Callable[[int], bool]) -> Pred:
    return lambda s, u, f, t: test(s)


def _by_date(kind: str, when: float) -> Pred:
    if kind == "before":
        return lambda s, u, f, t: t < when
    if kind == "since":
        return lambda s, u, f, t: t >= when
    day = datetime.date.fromtimestamp(when)
    return lambda s, u, f, t: datetime.date.fromtimestamp(t) == day


def _compile(words: Sequence[str], highest: int) -> list[Pred]:
    preds: list[Pred] = []
    i = 0
    while i < len(words):
        w = words[i].lower()
        i += 1
        if w in _SIMPLE:
            preds.append(_SIMPLE[w])
        elif w == "uid" and i < len(words):
            preds.append(_by_uid(_uid_set(words[i], highest)))
            i += 1
        elif w in ("before", "since", "on", "savedbefore", "savedsince", "savedon") \
                and i < len(words):
            when = _date(words[i])
            i += 1
            preds.append(_by_date(w.removeprefix("saved"), when))
        elif re.fullmatch(r"[\d*:,]+", w):
            preds.append(_by_seq(_uid_set(w, highest)))
        else:
            raise UsageError(f"Unknown argument {words[i - 1]}", EX_TEMPFAIL)
    return preds


def search(box: Mailbox, criteria: Sequence[str]) -> list[int]:
    uids = list(box.uids)
    preds = _compile(criteria, uids[-1] if uids else 0)
    details = box.details(uids) if uids else []
    out: list[int] = []
    for seq, d in enumerate(details, 1):
        when = d.internal_date if isinstance(d.internal_date, int | float) else \
            d.internal_date.timestamp()
        if all(p(seq, d.uid, d.flags, when) for p in preds):
            out.append(d.uid)
    return out


# -- running as the user ------------------------------------------------------------------------


class RecordingPrinter(Printer):
    """A child's printer: records headers and values for the parent to replay."""

    def __init__(self, kind: str, events: list[list[object]]) -> None:
        super().__init__(kind)
        self.events = events

    def header(self, key: str, title: str | None = None, flags: int = 0) -> None:
        self.events.append(["header", key, title, flags])

    def value(self, value: str) -> None:
        self.events.append(["value", value])


class RecordingOutput(Output):
    def __init__(self) -> None:
        super().__init__(None)
        self.events: list[list[object]] = []

    def init(self, default: str) -> Printer:
        if self.printer is None:
            self.events.append(["init", default])
            self.printer = RecordingPrinter(default, self.events)
        return self.printer

    def write(self, text: str) -> None:
        self.events.append(["write", text])


class Replay:
    """Feeds the children's events into the real output, adding ``username`` with -A."""

    def __init__(self, out: Output, all_users: bool) -> None:
        self.out = out
        self.all_users = all_users
        self.printer: Printer | None = None
        self.headers_done = False
        self.columns = 0

    def user(self, user: str, events: list[list[object]]) -> None:
        seen_header = False
        index = 0
        for event in events:
            kind = event[0]
            if kind == "init":
                self.printer = self.out.init(str(event[1]))
            elif kind == "header" and self.printer is not None:
                seen_header = True
                if self.headers_done:
                    continue
                if self.all_users and self.columns == 0:
                    self.printer.header("username", "Username", HIDE_TITLE)
                self.printer.header(str(event[1]), None if event[2] is None else str(event[2]),
                                    int(str(event[3])))
                self.columns += 1
            elif kind == "value" and self.printer is not None:
                if self.all_users and index % self.columns == 0:
                    self.printer.value(user)
                self.printer.value(str(event[1]))
                index += 1
            elif kind == "write":
                self.out.write(str(event[1]))
        if seen_header:
            self.headers_done = True


def run(words: Sequence[str], cfg: Config, overrides: dict[str, str], base_dir: str,
        out: Output) -> int:
    try:
        user, job = _parse(list(words))
    except UsageError as e:
        sys.stderr.write(f"Fatal: {e}\n")
        return e.code
    socket_name = overrides.get("auth_socket_path") or str(cfg.get("auth_socket_path"))
    socket_path = os.path.join(base_dir, socket_name)
    replay = Replay(out, user is None)
    if user is not None:
        return _run_user(user, job, cfg, overrides, socket_path=socket_path,
                         replay=replay)
    client = MasterClient(socket_path)
    try:
        users = list(client.list_users({"user": "*", "service": "doveadm"}))
    except (OSError, AuthConnError) as e:
        sys.stderr.write(f"Error: auth-master: userdb list: {e}\nFatal: user listing failed\n")
        return EX_TEMPFAIL
    finally:
        client.close()
    rc = 0
    for name in users:
        rc = _run_user(name, job, cfg, overrides, socket_path=socket_path,
                        replay=replay) or rc
    return rc


def _run_user(user: str, job: Job, cfg: Config, overrides: dict[str, str], *,
              socket_path: str, replay: Replay) -> int:
    try:
        reply = lookup_user(socket_path, user, {"service": "doveadm"})
    except UserNotFound:
        sys.stderr.write(f"doveadm({user}): Error: User doesn't exist\n")
        return EX_NOUSER
    except UserdbError as e:
        cause = e.__cause__
        text = (f"connect({socket_path}) failed: {cause.strerror or cause}"
                if isinstance(cause, OSError) else str(e))
        sys.stderr.write(f"doveadm({user})<{os.getpid()}><>: Error: auth-master: userdb "
                         f"lookup({user}): {text}\n"
                         f"doveadm({user}): Error: User lookup failed: Internal error occurred. "
                         "Refer to server log for more information.\n")
        return EX_TEMPFAIL
    fields = dict(reply.fields)
    if "mail" not in fields and "mail_location" in overrides:
        fields["mail"] = overrides["mail_location"]
    try:
        mail_user = resolve(cfg, reply.user, fields, "doveadm")
    except MailUserError as e:
        sys.stderr.write(f"doveadm({user}): Error: {e}\n")
        return EX_TEMPFAIL
    _CURRENT_USER[0] = user
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        rc = EX_TEMPFAIL
        recorder = RecordingOutput()
        try:
            drop_privileges(mail_user, cfg)
            if mail_user.home and os.path.isdir(mail_user.home):
                os.chdir(mail_user.home)
            ns = Namespaces.from_config(cfg, fields, user=reply.user,
                                        mail_location=mail_user.mail_location,
                                        home=mail_user.home, service="doveadm")
            try:
                rc = job(ns, recorder, reply.user)
            finally:
                ns.close()
        except (MailUserError, StorageError, OSError) as e:
            sys.stderr.write(f"doveadm({user}): Error: {e}\n")
        except UsageError as e:
            sys.stderr.write(f"Fatal: {e}\n")
            rc = e.code
        finally:
            try:
                with os.fdopen(write_fd, "w", encoding="utf-8") as pipe:
                    json.dump(recorder.events, pipe)
                sys.stderr.flush()
            finally:
                os._exit(rc)
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        events = json.loads(data) if data else []
    except ValueError:
        events = []
    replay.user(reply.user, events)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EX_TEMPFAIL


Job = Callable[[Namespaces, Output, str], int]


def _user_opts(args: list[str], spec: str) -> tuple[dict[str, str], list[str]]:
    try:
        opts, rest = getopt.getopt(args, spec)
    except getopt.GetoptError as e:
        raise UsageError(f"invalid option -- '{e.opt}'") from None
    values = dict(opts)
    if "-A" in values:
        values["-u"] = ""
    elif "-u" not in values:
        if not os.environ.get("USER"):
            raise UsageError("USER environment is missing and -u option not used")
        values["-u"] = os.environ["USER"]
    return values, rest


def _parse(words: list[str]) -> tuple[str | None, Job]:
    head = words[0]
    if head == "mailbox":
        sub = words[1] if len(words) > 1 else ""
        args = words[2:]
        if sub == "list":
            values, rest = _user_opts(args, "Au:7s8")
            return values["-u"] or None, lambda ns, out, u: _list(
                ns, out, rest, subscribed="-s" in values, utf7="-7" in values)
        if sub == "status":
            values, rest = _user_opts(args, "Au:t")
            if len(rest) < 2:
                raise UsageError("mailbox status: Missing fields or mailbox")
            fields = _status_fields(rest[0], "-t" in values)
            return values["-u"] or None, lambda ns, out, u: _status(ns, out, fields, rest[1:],
                                                           "-t" in values)
        if sub in ("create", "delete", "rename"):
            values, rest = _user_opts(args, "Au:s" + ("rZ" if sub == "delete" else "g:"))
            if not rest or (sub == "rename" and len(rest) != 2):
                raise UsageError(f"mailbox {sub}: Missing mailbox name")
            return values["-u"] or None, lambda ns, out, u: _change(
                ns, sub, rest, subscribe="-s" in values, recursive="-r" in values)
        raise UsageError(f"Unknown command 'mailbox {sub}'")
    values, rest = _user_opts(words[1:], "Au:")
    if head == "fetch":
        if not rest:
            raise UsageError("fetch: Missing fields")
        fields = rest[0].split()
        for name in fields:
            if name not in FETCH_FIELDS and not name.startswith("hdr."):
                sys.stderr.write(FETCH_HELP + "\n")
                raise UsageError(f"Unknown fetch field: {name}", EX_TEMPFAIL)
        mailbox, criteria = parse_query(rest[1:])
        return values["-u"] or None, lambda ns, out, u: _fetch(
            ns, out, u, fields, mailbox=mailbox, criteria=criteria)
    mailbox, criteria = parse_query(rest)
    if not criteria:
        raise UsageError("expunge: To avoid accidents, each branch in search query must "
                         "contain something else besides MAILBOX (e.g. just add \"all\" if "
                         "you want everything)")
    return values["-u"] or None, lambda ns, out, u: _expunge(ns, mailbox, criteria)


def _list(ns: Namespaces, out: Output, masks: list[str], *, subscribed: bool,
          utf7: bool = False) -> int:
    printer = out.init("flow")
    printer.header("mailbox", "mailbox", HIDE_TITLE)
    names: list[str] = []
    for mask in masks or ["*"]:
        for info in ns.list(mask, subscribed=subscribed):
            if info.name not in names and (
                    not subscribed or "\\NonExistent" not in info.attributes):
                names.append(info.name)
    for name in names:
        printer.value(mutf7.encode(name) if utf7 else name)
    return 0


def _status_fields(text: str, total: bool) -> list[str]:
    wanted: set[str] = set()
    for name in text.split():
        name = name.lower()
        if name == "all":
            wanted |= set(TOTAL_FIELDS if total else STATUS_FIELDS)
        elif name in STATUS_FIELDS:
            if total and name not in TOTAL_FIELDS:
                raise UsageError(f"Status field {name} can't be used with -t")
            wanted.add(name)
        else:
            raise UsageError(f"Unknown status field: {name}", EX_USAGE)
    return [f for f in STATUS_FIELDS if f in wanted]


def _status(ns: Namespaces, out: Output, fields: list[str], masks: list[str],
            total: bool) -> int:
    printer = out.init("flow")
    if not total:
        printer.header("mailbox", "mailbox", HIDE_TITLE)
    for f in fields:
        printer.header(f)
    names: list[str] = []
    for mask in masks:
        if "*" in mask or "%" in mask:
            names += [i.name for i in ns.list(mask) if "\\Noselect" not in i.attributes
                      and i.name not in names]
        elif mask not in names:
            names.append(mask)
    sums = dict.fromkeys(fields, 0)
    rc = 0
    for name in names:
        try:
            st = ns.status(name)
        except StorageError as e:
            sys.stderr.write(f"doveadm({ns_user(ns)}): Error: Mailbox {name}: Failed to "
                             f"lookup mailbox status: {e}\n")
            rc = _code(e)
            continue
        values = {"messages": st.messages, "recent": st.recent, "uidnext": st.uidnext,
                  "uidvalidity": st.uidvalidity, "unseen": st.unseen,
                  "highestmodseq": st.highestmodseq, "vsize": st.size}
        if total:
            for f in fields:
                sums[f] += values[f]
            continue
        printer.value(name)
        for f in fields:
            printer.value(str(values[f]))
    if total:
        for f in fields:
            printer.value(str(sums[f]))
    return rc


_CURRENT_USER = [""]


def ns_user(ns: Namespaces) -> str:
    return _CURRENT_USER[0]


def _change(ns: Namespaces, sub: str, names: list[str], *, subscribe: bool,
            recursive: bool = False) -> int:
    rc = 0
    user = _CURRENT_USER[0]
    if sub == "rename":
        old, new = names
        try:
            ns.rename(old, new)
            if subscribe and old in ns.subscriptions():
                ns.unsubscribe(old)
                ns.subscribe(new)
        except StorageError as e:
            sys.stderr.write(f"doveadm({user}): Error: Can't rename mailbox {old} to {new}: "
                             f"{e}\n")
            return _code(e)
        return 0
    if sub == "delete" and recursive:
        expanded: list[str] = []
        for name in names:
            sep = ns.separator_of(name)
            children = [i.name for i in ns.list(name + sep + "*")]
            expanded += [*sorted(children, key=lambda n: -n.count(sep)), name]
        names = expanded
    for name in names:
        try:
            if sub == "create":
                ns.create(name)
                if subscribe:
                    ns.subscribe(name)
            else:
                if name.upper() == "INBOX":
                    raise StorageError("INBOX can't be deleted.", code="CANNOT")
                ns.delete(name)
                if subscribe:
                    ns.unsubscribe(name)
        except StorageError as e:
            sys.stderr.write(f"doveadm({user}): Error: Can't {sub} mailbox {name}: {e}\n")
            rc = _code(e)
    return rc


_FLAG_ORDER = ((flagbits.ANSWERED, "\\Answered"), (flagbits.FLAGGED, "\\Flagged"),
               (flagbits.DELETED, "\\Deleted"), (flagbits.SEEN, "\\Seen"),
               (flagbits.DRAFT, "\\Draft"))


def _flags_text(bits: int, keywords: Sequence[str], recent: bool) -> str:
    """IMAP's order, as doveadm prints it: system flags, \\Recent, then keywords."""
    names = [name for bit, name in _FLAG_ORDER if bits & bit]
    if recent:
        names.append("\\Recent")
    names += [keywords[i] for i in flagbits.keyword_indexes(bits) if i < len(keywords)]
    return " ".join(names)


def _fetch(ns: Namespaces, out: Output, user: str, fields: list[str], *, mailbox: str | None,
           criteria: list[str]) -> int:
    printer = out.init("pager")
    for f in fields:
        printer.header(f)
    boxes = [mailbox] if mailbox else [i.name for i in ns.list("*")
                                       if "\\Noselect" not in i.attributes]
    for name in boxes:
        try:
            recent_count = ns.status(name).recent
            box = ns.open(name, readonly=True)
        except MailboxNotFound:
            continue
        try:
            box.sync()
            uids = search(box, criteria or ["all"])
            # a read-only view claims no \Recent; the recent ones are the newest UIDs
            recent = set(box.uids[len(box.uids) - recent_count:]) if recent_count else set()
            details = {d.uid: d for d in box.details(uids)} if uids else {}
            seqs = {u: i + 1 for i, u in enumerate(box.uids)}
            for uid in uids:
                d = details[uid]
                headers = None
                for f in fields:
                    if f.startswith("hdr."):
                        if headers is None:
                            raw = box.read_message(uid)
                            end = raw.find(b"\r\n\r\n")
                            end2 = raw.find(b"\n\n")
                            cut = min(x for x in (end, end2, len(raw)) if x >= 0)
                            headers = BytesHeaderParser().parsebytes(raw[:cut + 2])
                        value = headers.get(f[4:])
                        printer.value("" if value is None else
                                      re.sub(r"\r?\n[ \t]", " ", str(value)).strip())
                        continue
                    when = d.internal_date if isinstance(d.internal_date, int | float) \
                        else d.internal_date.timestamp()
                    printer.value({
                        "user": user, "mailbox": name, "seq": str(seqs.get(uid, 0)),
                        "uid": str(uid),
                        "flags": _flags_text(d.flags, box.keywords, uid in recent),
                        "size.physical": str(d.size), "size.virtual": str(d.vsize),
                        "date.received": time.strftime("%Y-%m-%d %H:%M:%S",
                                                       time.localtime(when)),
                        "date.saved": time.strftime("%Y-%m-%d %H:%M:%S",
                                                    time.localtime(when)),
                        "date.received.unixtime": str(int(when)),
                        "date.saved.unixtime": str(int(when)),
                    }[f])
        finally:
            box.close()
    return 0


def _expunge(ns: Namespaces, mailbox: str | None, criteria: list[str]) -> int:
    boxes = [mailbox] if mailbox else [i.name for i in ns.list("*")
                                       if "\\Noselect" not in i.attributes]
    rc = 0
    for name in boxes:
        try:
            box = ns.open(name)
        except MailboxNotFound:
            continue
        except StorageError as e:
            sys.stderr.write(f"doveadm({_CURRENT_USER[0]}): Error: {e}\n")
            rc = _code(e)
            continue
        try:
            box.sync()
            uids = search(box, criteria)
            if uids:
                box.store(uids, "+", ["\\Deleted"])
                box.expunge(uids)
                box.sync()
        finally:
            box.close()
    return rc
