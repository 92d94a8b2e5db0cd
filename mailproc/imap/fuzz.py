"""Fuzz entry point for the IMAP protocol core (atheris-compatible, also driven by hypothesis).

``fuzz_parser(data)`` plays a whole client stream through a ``Connection`` the way a server
would (accepting or refusing literals, entering IDLE and AUTHENTICATE when asked, swapping
transports) and formats every response shape for what it parsed. Any exception escaping it
is a bug: malformed input must only ever produce ``Bad``/``Bye`` events.

    python -m atheris ... or: import atheris; atheris.Setup(sys.argv, fuzz_parser); atheris.Fuzz()
"""

from __future__ import annotations

import random
import sys
import time

from cote.storage.api import MailboxList

from . import events as ev
from . import response
from .commands import Fetch, List, Search, Status
from .connection import Connection
from .values import SeqSet

MAX_EVENTS = 10_000


def _consume(conn: Connection, budget: list[int], decide: int) -> bool:
    """Drain events; False once the connection is closed."""
    while budget[0] > 0:
        budget[0] -= 1
        event = conn.next_event()
        if event is ev.NEED_DATA:
            return True
        if event is ev.CLOSED:
            return False
        if isinstance(event, ev.LiteralStart):
            if (event.size + decide) % 3:
                conn.accept_literal()
            else:
                conn.send(response.tagged("x", "NO", "Too big", "TOOBIG"))
                conn.reject_literal()
        elif isinstance(event, ev.Command):
            _answer(conn, event)
        elif isinstance(event, ev.Bad):
            conn.send(response.tagged(event.tag, "BAD", event.text))
        elif isinstance(event, ev.Bye):
            conn.send(response.untagged("BYE", event.text))
        elif isinstance(event, ev.AuthResponse):
            event.decode()
            if event.cancelled or len(event.line) % 2:
                conn.end_authenticate()
    return True


def _answer(conn: Connection, cmd: ev.Command) -> None:
    """Exercise the formatter with what the command carried."""
    w = conn.writer
    args = cmd.args
    if cmd.name == "IDLE":
        conn.send(response.continuation("idling"))
        conn.idle(cmd.tag)
    elif cmd.name == "AUTHENTICATE":
        conn.send(response.continuation(b""))
        conn.authenticate(cmd.tag)
    elif cmd.name == "STARTTLS":
        conn.start_tls()
    elif isinstance(args, Fetch):
        for seq in args.seqset.iter(3):
            fr = response.FetchResponse(w, seq)
            for att in args.atts:
                if att.section is not None:
                    fr.literal(att.response_name, b"x")
                else:
                    fr.number(att.name, seq)
            fr.close()
    elif isinstance(args, Search):
        if args.returns is None:
            w.write(response.search([1, 2]))
        else:
            w.write(response.esearch(cmd.tag, cmd.uid, {"ALL": SeqSet.from_ints([1, 2, 3])}))
    elif isinstance(args, List):
        for p in args.patterns:
            w.write(response.list_line(("\\HasNoChildren",), ".", p))
    elif isinstance(args, Status):
        w.write(response.status(args.mailbox.name, dict.fromkeys(args.items, 1)))
    w.write(response.tagged(cmd.tag, "OK", "done"))


def fuzz_parser(data: bytes) -> None:
    """Feed ``data`` in chunks whose sizes come from its first byte; must never raise."""
    if not data:
        return
    step = (data[0] % 17) + 1
    decide = data[-1]
    conn = Connection(max_line_length=512 + (data[0] % 4) * 256,
                      literal_minus=bool(data[0] & 0x40), literal_plus=not data[0] & 0x80,
                      pre_login=bool(data[0] & 0x20))
    if data[0] & 0x10:
        conn.enabled = frozenset({"QRESYNC", "CONDSTORE"})
    budget = [MAX_EVENTS]
    body = data[1:]
    for i in range(0, len(body), step):
        conn.receive_data(body[i:i + step])
        if not _consume(conn, budget, decide):
            break
        conn.data_to_send()
    else:
        conn.receive_data(b"")
        _consume(conn, budget, decide)
    conn.data_to_send()


SESSION_CORPUS = (
    b"a SELECT INBOX\r\n", b"b EXAMINE Archive\r\n", b"c FETCH 1:* (FLAGS UID ENVELOPE)\r\n",
    b"d UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10> BINARY.SIZE[1])\r\n",
    b"e FETCH 2 (BODYSTRUCTURE BODY[1.MIME] RFC822.SIZE INTERNALDATE)\r\n",
    b"f STORE 1:2 +FLAGS (\\Deleted kw1)\r\n", b"g UID STORE 1:* -FLAGS.SILENT (\\Seen)\r\n",
    b"h SEARCH OR FROM alice NOT SEEN LARGER 10\r\n", b"i UID SEARCH RETURN (MIN COUNT) ALL\r\n",
    b"j SORT (REVERSE DATE) UTF-8 ALL\r\n", b"k THREAD REFERENCES UTF-8 ALL\r\n",
    b"l COPY 1:* Archive\r\n", b"m UID MOVE 2 Trash\r\n", b"n EXPUNGE\r\n", b"o CLOSE\r\n",
    b"p APPEND INBOX (\\Seen) {12+}\r\nSubject: x\r\n\r\n",
    b"q APPEND Archive {10}\r\nSubject: y\r\n", b"r STATUS INBOX (MESSAGES UNSEEN SIZE)\r\n",
    b'r2 LIST "" * RETURN (STATUS (MESSAGES))\r\n', b"s CREATE Fz\r\n", b"t DELETE Fz\r\n",
    b"u RENAME Fz Fy\r\n", b"v IDLE\r\nDONE\r\n", b"w ENABLE QRESYNC\r\n",
    b"x SELECT INBOX (QRESYNC (1 1 1:5))\r\n", b"y FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
    b"z SEARCH RETURN (SAVE) SEEN\r\n", b"z2 FETCH $ (UID)\r\n", b"A UNSELECT\r\n",
    b"B NOOP\r\n", b"C GETQUOTAROOT INBOX\r\n", b"D NAMESPACE\r\n", b"E ID NIL\r\n",
)
"""Valid commands a session fuzz run mutates and concatenates (``fuzz_session``)."""


class Unanswered(AssertionError):
    """A tagged command got no tagged response."""


def fuzz_session(data: bytes, mailboxes: MailboxList) -> bytes:
    """Play ``data`` (fed in chunks whose size its first byte picks) through a whole
    ``Session`` on ``mailboxes``, as ``server.serve`` does but with nothing between the
    session and the caller: any exception escapes. Returns everything the session wrote;
    raises ``Unanswered`` when a command that the parser produced got no tagged reply
    (except an APPEND the stream ended inside)."""
    from .session import Session  # noqa: PLC0415 - the parser-only fuzz needs no storage

    conn = Connection()
    session = Session(mailboxes, conn, "fuzz")
    out = [session.greeting()]
    tags: list[str] = []
    step = (data[0] % 61) + 1 if data else 1
    body = data[1:]

    def run() -> bool:
        while True:
            event = conn.next_event()
            if event is ev.NEED_DATA or event is ev.CLOSED:
                return event is ev.NEED_DATA
            if isinstance(event, ev.Command) or (isinstance(event, ev.Bad) and event.tag != "*"):
                tags.append(event.tag)
            for _ in session.handle(event):
                out.append(conn.data_to_send())
            out.append(conn.data_to_send())
            if session.logged_out:
                return False

    try:
        alive = True
        for i in range(0, len(body), step):
            conn.receive_data(body[i:i + step])
            if not (alive := run()):
                break
        if alive and session.idling is not None:
            conn.receive_data(b"DONE\r\n")
            run()
        unfinished = session.unfinished_append()
        if alive:
            conn.receive_data(b"")
            run()
    finally:
        session.close()
    written = b"".join(out)
    answered = {ln.split(b" ", 1)[0].decode("latin-1") for ln in written.split(b"\r\n")}
    missing = [t for t in tags if t not in answered and t != unfinished]
    if missing:
        raise Unanswered(f"no tagged reply for {missing}")
    return written


def main() -> None:  # pragma: no cover - a developer tool
    """``python -m cote.mailproc.imap.fuzz [atheris args]``: atheris when installed, else a
    few seconds of random mutation of a small built-in corpus."""
    try:
        import atheris  # noqa: PLC0415 - an optional developer tool
    except ImportError:
        corpus = [b"a LOGIN {5}\r\nuser1 pass1\r\n", b"b APPEND INBOX (\\Seen) {3+}\r\nabc\r\n",
                  b"c UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (A)]<0.5>)\r\n",
                  b'd SEARCH OR (FROM "x") NOT 1:5 SINCE 1-Jan-2020\r\n', b"e IDLE\r\nDONE\r\n"]
        rng = random.Random()  # noqa: S311 - fuzzing, not cryptography
        deadline = time.monotonic() + 5
        runs = 0
        while time.monotonic() < deadline:
            data = bytearray(bytes([rng.randrange(256)]) + b"".join(rng.choices(corpus, k=3)))
            for _ in range(rng.randrange(8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            fuzz_parser(bytes(data))
            runs += 1
        print(f"{runs} runs, no exception")
        return
    atheris.Setup(sys.argv, fuzz_parser)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
