"""Response shapes: exact bytes, checked against what Dovecot sends for the same data."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta

import pytest

from cote.mailproc.imap import FetchResponse, FileSpan, SeqSet, Writer, response
from cote.mailproc.imap.commands import make_mailbox, parse_date_time
from cote.mailproc.imap.response import ShortSpan
from cote.mailproc.imap.tokens import Atom, tokenize
from tests.imap.conftest import OracleSession
from tests.imap.oracle import strip_timing


def test_tagged_and_untagged_status_with_codes() -> None:
    assert response.tagged("a1", "OK", "Select completed", "READ-WRITE") == \
        b"a1 OK [READ-WRITE] Select completed\r\n"
    assert response.tagged("a", "NO", "Quota exceeded (mailbox for user is full)",
                           "OVERQUOTA") == \
        b"a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"
    assert response.tagged("a", "NO", "Mailbox doesn't exist: x", "TRYCREATE") == \
        b"a NO [TRYCREATE] Mailbox doesn't exist: x\r\n"
    assert response.untagged("OK", "Predicted next UID", "UIDNEXT 5") == \
        b"* OK [UIDNEXT 5] Predicted next UID\r\n"
    assert response.untagged("OK", "Highest", "HIGHESTMODSEQ 50") == \
        b"* OK [HIGHESTMODSEQ 50] Highest\r\n"
    assert response.tagged("a", "OK", "Copy completed",
                           response.copyuid(17, SeqSet.from_ints([1, 2, 5]),
                                            SeqSet.from_ints([31, 32, 33]))) == \
        b"a OK [COPYUID 17 1:2,5 31:33] Copy completed\r\n"
    assert response.tagged("a", "OK", "Append completed",
                           response.appenduid(9, SeqSet.from_ints([4]))) == \
        b"a OK [APPENDUID 9 4] Append completed\r\n"
    assert response.tagged("a", "OK", "Logged in", response.capability_code(
        ["IMAP4rev1", "IDLE"])) == b"a OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"
    assert response.tagged("a", "OK", "Select completed " + response.timing(0.0042, 0, 0.003)) \
        == b"a OK Select completed (0.004 + 0.000 + 0.003 secs).\r\n"


def test_untagged_data_shapes() -> None:
    assert response.exists(3) == b"* 3 EXISTS\r\n"
    assert response.recent(0) == b"* 0 RECENT\r\n"
    assert response.expunge(2) == b"* 2 EXPUNGE\r\n"
    assert response.flags(["\\Answered", "\\Seen", "foo"]) == \
        b"* FLAGS (\\Answered \\Seen foo)\r\n"
    assert response.vanished(SeqSet.from_ints(range(1, 6)), earlier=True) == \
        b"* VANISHED (EARLIER) 1:5\r\n"
    assert response.vanished(SeqSet.from_ints([3, 7])) == b"* VANISHED 3,7\r\n"
    assert response.enabled(["QRESYNC", "CONDSTORE"]) == b"* ENABLED QRESYNC CONDSTORE\r\n"
    assert response.search([]) == b"* SEARCH\r\n"
    assert response.search([1, 2], modseq=50) == b"* SEARCH 1 2 (MODSEQ 50)\r\n"
    assert response.sort([3, 1]) == b"* SORT 3 1\r\n"
    assert response.continuation() == b"+ OK\r\n"
    assert response.continuation("idling") == b"+ idling\r\n"
    assert response.id_response({"name": "Dovecot"}) == b'* ID ("name" "Dovecot")\r\n'
    assert response.id_response(None) == b"* ID NIL\r\n"
    assert response.list_line(["\\HasNoChildren"], ".", "INBOX") == \
        b'* LIST (\\HasNoChildren) "." INBOX\r\n'
    assert response.list_line([], None, "a b", lsub=True) == b'* LSUB () NIL "a b"\r\n'
    assert response.list_line(["\\HasChildren"], "/", "Ärger",
                              extended=[b'"CHILDINFO" ("SUBSCRIBED")']) == \
        b'* LIST (\\HasChildren) "/" &AMQ-rger ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    assert response.esearch("a", True, {"COUNT": 3, "ALL": SeqSet.from_ints([1, 2, 3]),
                                        "MIN": 1}) == \
        b'* ESEARCH (TAG "a") UID MIN 1 ALL 1:3 COUNT 3\r\n'


def test_fetch_response_is_assembled_from_pieces() -> None:
    w = Writer()
    FetchResponse(w, 3).number("UID", 5).flags(["\\Seen"]) \
        .literal("BODY[HEADER.FIELDS (SUBJECT)]", b"Subject: x\r\n\r\n") \
        .nstring("X", None).close()
    assert w.take() == (b"* 3 FETCH (UID 5 FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {14}\r\n"
                        b"Subject: x\r\n\r\n X NIL)\r\n")


def test_fetch_body_streams_from_a_file_span() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"HEADERS\r\n\r\nbody text\r\n")
        f.flush()
        w = Writer()
        FetchResponse(w, 1).literal_span("BODY[]", FileSpan(f.fileno(), 0, 22)).close()
        assert w.pending == len(b"* 1 FETCH (BODY[] {22}\r\n") + 22 + 3
        items = w.drain()
        assert items == [b"* 1 FETCH (BODY[] {22}\r\n", FileSpan(f.fileno(), 0, 22), b")\r\n"]
        FetchResponse(w, 1).literal_span("BODY[]", FileSpan(f.fileno(), 9, 13)).close()
        assert w.take() == b"* 1 FETCH (BODY[] {13}\r\n\r\nbody text\r\n)\r\n"
        FetchResponse(w, 2).literal_span("BODY[]", FileSpan(f.fileno(), 20, 10)).close()
        with pytest.raises(ShortSpan):
            w.take()


def test_fetch_of_100000_messages_streams_under_a_high_water_mark() -> None:
    with tempfile.NamedTemporaryFile() as f:
        body = b"Subject: s\r\n\r\n" + b"x" * 2000
        f.write(body)
        f.flush()
        fd = os.open(f.name, os.O_RDONLY)
        try:
            w = Writer()
            high_water = 256 * 1024
            sent = 0
            max_pending = 0
            lines = 0
            for seq in range(1, 100_001):
                FetchResponse(w, seq).number("UID", seq).flags(()) \
                    .literal_span("BODY[]", FileSpan(fd, 0, len(body))).close()
                max_pending = max(max_pending, w.pending)
                if w.pending >= high_water:  # the adapter flushes; the command resumes
                    chunk = w.take()
                    lines += chunk.count(b" FETCH (")
                    sent += len(chunk)
            chunk = w.take()
            lines += chunk.count(b" FETCH (")
            sent += len(chunk)
        finally:
            os.close(fd)
    assert lines == 100_000
    assert max_pending < high_water + 3000
    assert sent > 100_000 * len(body)


# -- against Dovecot --------------------------------------------------------------------------

def _untagged(session: OracleSession, command: bytes) -> list[bytes]:
    return [line for line in session.raw.exchange(command) if line.startswith(b"* ")]


def test_list_and_status_lines_match_dovecot(oracle_session: OracleSession) -> None:
    for name in (b'"a b"', b"&AOQ-", b'"x\\\\y"', b'"q\\"q"'):
        oracle_session.raw.exchange(b"c CREATE " + name + b"\r\n")
    lines = [x for x in _untagged(oracle_session, b'l LIST "" *\r\n') if x.startswith(b"* LIST ")]
    assert len(lines) >= 5
    for line in lines:
        toks, _ = tokenize(line, len(b"* LIST "))
        attrs, delim, raw = toks
        assert isinstance(attrs, list)
        name = make_mailbox(bytes(raw)).name  # type: ignore[arg-type]
        assert response.list_line([a.decode() for a in attrs], bytes(delim).decode(),  # type: ignore
                                  name) == line
        status = [x for x in _untagged(oracle_session, b"s STATUS " + response.mailbox_name(name)
                                       + b" (X-GUID SIZE UNSEEN MESSAGES UIDNEXT HIGHESTMODSEQ)\r\n")
                  if x.startswith(b"* STATUS ")]
        toks, _ = tokenize(status[0], len(b"* STATUS "))
        items = toks[1]
        assert isinstance(items, list)
        values: dict[str, int | str] = {
            bytes(items[i]).decode(): bytes(items[i + 1]).decode()  # type: ignore[arg-type]
            for i in range(0, len(items), 2)}
        values = {k: (v if k == "X-GUID" else int(v)) for k, v in reversed(values.items())}
        assert response.status(name, values) == status[0]


def test_fetch_search_and_esearch_lines_match_dovecot(oracle_session: OracleSession) -> None:
    raw = oracle_session.raw
    raw.exchange(b"s SELECT INBOX\r\n")
    raw.exchange(b"f STORE 2 +FLAGS (\\Seen $Label1)\r\n")
    fetched = [line for line in raw.exchange(b"f UID FETCH 1:* (UID FLAGS)\r\n")
               if line.startswith(b"* ")]
    for line in fetched:
        seq = int(line.split()[1])
        toks, _ = tokenize(line, line.index(b"(") )
        inner = toks[0]
        assert isinstance(inner, list)
        uid = int(inner[1])  # type: ignore[call-overload]
        flag_names = [bytes(f).decode() for f in inner[3]]  # type: ignore[union-attr]
        w = Writer()
        FetchResponse(w, seq).number("UID", uid).flags(flag_names).close()
        assert w.take() == line
    count = len(fetched)
    (es,) = _untagged(oracle_session, b"e SEARCH RETURN (COUNT ALL MAX MIN) ALL\r\n")
    assert es == response.esearch("e", False, {"COUNT": count, "MIN": 1, "MAX": count,
                                               "ALL": SeqSet.from_ints(range(1, count + 1))})
    (none,) = _untagged(oracle_session, b"n SEARCH RETURN () NOT ALL\r\n")
    assert none == response.esearch("n", False, {"ALL": SeqSet()})
    (plain,) = _untagged(oracle_session, b"p SEARCH ALL\r\n")
    assert plain == response.search(range(1, count + 1))
    tagged = [strip_timing(x) for x in raw.exchange(b"c COPY 1:2 INBOX\r\n")
              if x.startswith(b"c OK")]
    code = tagged[0][len(b"c OK ["):tagged[0].index(b"]")].decode()
    _, uidvalidity, src, dst = code.split()
    assert src == "1:2"
    assert response.tagged("c", "OK", "Copy completed",
                           response.copyuid(int(uidvalidity), SeqSet.from_ints([1, 2]),
                                            SeqSet.from_ints(range(int(dst.split(":")[0]),
                                                                   int(dst.split(":")[0]) + 2)))
                           ).rstrip(b"\r\n") == tagged[0]
    assert isinstance(Atom(b"x"), bytes)


def test_replies_are_values_and_internaldate_is_dovecots_shape() -> None:
    assert response.no("Quota exceeded (mailbox for user is full)", "OVERQUOTA").to_bytes("a") \
        == b"a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"
    assert response.ok("Logout completed.").to_bytes("z") == b"z OK Logout completed.\r\n"
    assert response.bad("Expected DONE").to_bytes("i") == b"i BAD Expected DONE\r\n"
    when = datetime(2020, 1, 5, 2, 32, 3, tzinfo=UTC)
    local = when.astimezone()
    w = Writer()
    FetchResponse(w, 60).internaldate(when).modseq(320).number("RFC822.SIZE", 3).close()
    text = w.take()
    assert text.startswith(b'* 60 FETCH (INTERNALDATE "%02d-Jan-2020 ' % local.day)
    assert text.endswith(b' MODSEQ (320) RFC822.SIZE 3)\r\n')
    if local.utcoffset() == timedelta(0):  # this machine runs on UTC, like the oracle
        assert response.internaldate(when) == b'"05-Jan-2020 02:32:03 +0000"'
    assert response.internaldate(when.timestamp()) == response.internaldate(when)


def test_internaldate_matches_dovecot_for_an_appended_date(oracle_session: OracleSession) -> None:
    raw = oracle_session.raw
    sent = b" 5-Jan-2020 01:02:03 -0130"
    raw.exchange(b'a APPEND INBOX "%s" {3+}\r\nabc\r\n' % sent)
    raw.exchange(b"s SELECT INBOX\r\n")
    (line,) = [x for x in raw.exchange(b"f FETCH * (INTERNALDATE)\r\n") if b"FETCH (" in x]
    when = parse_date_time(sent)
    assert when is not None
    assert line.endswith(b"(INTERNALDATE " + response.internaldate(when) + b")\r\n")


def test_thread_and_namespace_shapes() -> None:
    # RFC 5256's example: (2)(3 6 (4 23)(44 7 96))
    def n(number: int | None, *kids: response.ThreadNode) -> response.ThreadNode:
        return (number, kids)

    tree = [n(2), n(3, n(6, n(4, n(23)), n(44, n(7, n(96)))))]
    assert response.thread(tree) == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    # a missing parent groups its children: ((3)(5))
    assert response.thread([n(None, n(3), n(5))]) == b"* THREAD ((3)(5))\r\n"
    assert response.thread([n(1, n(None, n(2), n(3)))]) == b"* THREAD (1 (2)(3))\r\n"
    assert response.thread([]) == b"* THREAD\r\n"
    assert response.namespace([("", ".")]) == b'* NAMESPACE (("" ".")) NIL NIL\r\n'
    assert response.namespace([("", "/")], None, [("Shared/", "/")]) == \
        b'* NAMESPACE (("" "/")) NIL (("Shared/" "/"))\r\n'


def test_namespace_matches_dovecot(oracle_session: OracleSession) -> None:
    (line,) = _untagged(oracle_session, b"n NAMESPACE\r\n")
    assert line == response.namespace([("", ".")])


def _members(items: list[object]) -> response.ThreadNode:
    """Dovecot's thread-members list, tokenized, back into (number, children) nodes."""
    if not items:
        return (None, ())
    head = items[0]
    if isinstance(head, list):  # a group under a missing parent
        return (None, tuple(_members(x) for x in items))  # type: ignore[arg-type]
    rest = items[1:]
    if rest and not isinstance(rest[0], list):
        return (int(head), (_members(rest),))  # type: ignore[call-overload]
    return (int(head), tuple(_members(x) for x in rest))  # type: ignore[call-overload,arg-type]


def test_thread_lines_match_dovecot(oracle_session: OracleSession) -> None:
    raw = oracle_session.raw
    raw.exchange(b"c CREATE threads\r\n")
    msgs = [(b"<a@x>", b""), (b"<b@x>", b"<a@x>"), (b"<c@x>", b"<a@x> <b@x>"),
            (b"<d@x>", b"<a@x>"), (b"<e@x>", b"<missing@x>"), (b"<f@x>", b"<missing@x>"),
            (b"<g@x>", b"")]
    for mid, refs in msgs:
        body = b"Message-ID: " + mid + b"\r\nSubject: s " + mid + b"\r\n"
        if refs:
            body += b"References: " + refs + b"\r\n"
        body += b"\r\nx\r\n"
        raw.exchange(b"a APPEND threads {%d+}\r\n%s\r\n" % (len(body), body))
    raw.exchange(b"s SELECT threads\r\n")
    try:
        for algorithm in (b"REFERENCES", b"ORDEREDSUBJECT"):
            (line,) = _untagged(oracle_session, b"t THREAD " + algorithm + b" UTF-8 ALL\r\n")
            toks, _ = tokenize(line, len(b"* THREAD"))
            roots = [_members(t) for t in toks]  # type: ignore[arg-type]
            assert len(roots) >= 2
            assert response.thread(roots) == line
    finally:
        raw.exchange(b"s SELECT INBOX\r\n")


def test_select_answer_shapes_match_dovecot(oracle_session: OracleSession) -> None:
    raw = oracle_session.raw
    raw.exchange(b"e ENABLE CONDSTORE\r\n")
    lines = raw.exchange(b"s SELECT INBOX\r\n")
    rebuilt: list[bytes] = []
    for line in lines:
        text = line.rstrip(b"\r\n")
        if text.startswith(b"* FLAGS "):
            toks, _ = tokenize(line, len(b"* FLAGS "))
            rebuilt.append(response.flags([bytes(f).decode() for f in toks[0]]))  # type: ignore
        elif text.startswith(b"* OK [PERMANENTFLAGS "):
            toks, _ = tokenize(line, len(b"* OK [PERMANENTFLAGS "))
            names = [bytes(f).decode() for f in toks[0]]  # type: ignore[union-attr]
            rebuilt.append(response.untagged("OK", "Flags permitted.",
                                             response.permanentflags_code(names)))
        elif text.endswith(b" EXISTS"):
            rebuilt.append(response.exists(int(text.split()[1])))
        elif text.endswith(b" RECENT"):
            rebuilt.append(response.recent(int(text.split()[1])))
        elif text.startswith(b"* OK ["):
            code, _, human = text[len(b"* OK ["):].partition(b"] ")
            rebuilt.append(response.untagged("OK", human.decode(), code.decode()))
        elif text.startswith(b"s OK "):
            rebuilt.append(response.tagged("s", "OK", "Select completed", "READ-WRITE"))
            line = strip_timing(line) + b"\r\n"
        else:
            raise AssertionError(line)
        assert rebuilt[-1] == line
    assert any(b"HIGHESTMODSEQ" in x for x in rebuilt) and any(b"UIDNEXT" in x for x in rebuilt)
