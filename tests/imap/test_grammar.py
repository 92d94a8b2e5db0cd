"""Transcript tests: command bytes -> the typed values a command handler consumes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from cote.mailproc.imap import FetchAtt, Mailbox, SearchKey, Section, SeqSet
from cote.mailproc.imap.commands import (
    Authenticate,
    Compress,
    Copy,
    Enable,
    Expunge,
    Fetch,
    Id,
    List,
    Login,
    MailboxArg,
    Rename,
    Search,
    Select,
    Sort,
    Status,
    Store,
    Thread,
    charset_supported,
    parse_date_time,
)
from cote.mailproc.imap.values import ModSeqEntry, QResync
from tests.imap.helpers import bad, parse

S = SeqSet


def test_login_takes_atoms_quoted_and_literals() -> None:
    assert parse(b"a LOGIN user1 pass1\r\n") == Login(b"user1", b"pass1")
    assert parse(b'a LOGIN "us\\"er" {3+}\r\np w\r\n') == Login(b'us"er', b"p w")


def test_authenticate_with_and_without_initial_response() -> None:
    assert parse(b"a AUTHENTICATE plain\r\n") == Authenticate("PLAIN", None)
    assert parse(b"a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n") == \
        Authenticate("PLAIN", b"AHVzZXIAcGFzcw==")
    assert parse(b"a AUTHENTICATE PLAIN =\r\n") == Authenticate("PLAIN", b"=")


def test_mailbox_names_are_decoded_from_modified_utf7_and_inbox_folds() -> None:
    assert parse(b"a SELECT inbox\r\n") == Select(Mailbox("INBOX", b"inbox"))
    sel = parse(b'a EXAMINE "Entw&APw-rfe"\r\n')
    assert isinstance(sel, Select) and sel.mailbox.name == "Entwürfe" and sel.mailbox.valid
    bad_name = parse(b'a CREATE "&Jjo"\r\n')
    assert isinstance(bad_name, MailboxArg) and not bad_name.mailbox.valid


def test_select_condstore_and_qresync_parameters() -> None:
    assert parse(b"a SELECT INBOX (CONDSTORE)\r\n") == Select(Mailbox("INBOX", b"INBOX"), True)
    q = parse(b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 "
              b"(1:3 11:13)))\r\n", frozenset({"QRESYNC"}))
    assert isinstance(q, Select)
    assert q.qresync == QResync(67890007, 20050715194045000,
                                S(((41, 41), (43, 211), (214, 541))),
                                (S(((1, 3),)), S(((11, 13),))))
    assert bad(b"a SELECT INBOX (QRESYNC (1 2))\r\n") == \
        "Error in IMAP command SELECT: QRESYNC not enabled"


def test_create_delete_rename_subscribe() -> None:
    assert parse(b"a CREATE foo.bar\r\n") == MailboxArg(Mailbox("foo.bar", b"foo.bar"))
    assert parse(b"a DELETE foo\r\n") == MailboxArg(Mailbox("foo", b"foo"))
    assert parse(b"a SUBSCRIBE foo\r\n") == MailboxArg(Mailbox("foo", b"foo"))
    assert parse(b"a RENAME a {1+}\r\nb\r\n") == Rename(Mailbox("a", b"a"), Mailbox("b", b"b"))
    assert bad(b"a RENAME a\r\n") == "Error in IMAP command RENAME: Missing arguments"


def test_list_extended_selection_and_return_options() -> None:
    lst = parse(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Foo/%") '
                b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n")
    assert lst == List("", ("INBOX", "Foo/%"), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
                       frozenset({"CHILDREN", "SPECIAL-USE", "STATUS"}), ("MESSAGES", "UNSEEN"),
                       extended=True)
    plain = parse(b'a LIST "" *\r\n')
    assert isinstance(plain, List) and plain.patterns == ("*",) and not plain.extended
    lsub = parse(b'a LSUB "" "&AOQ-*"\r\n')
    assert isinstance(lsub, List) and lsub.lsub and lsub.patterns == ("ä*",)
    assert bad(b'a LIST (FOO) "" "%"\r\n') == \
        "Error in IMAP command LIST: Unknown select options"


def test_status_items_include_size_and_highestmodseq() -> None:
    assert parse(b"a STATUS INBOX (MESSAGES UIDNEXT SIZE HIGHESTMODSEQ)\r\n") == \
        Status(Mailbox("INBOX", b"INBOX"), ("MESSAGES", "UIDNEXT", "SIZE", "HIGHESTMODSEQ"))
    assert bad(b"a STATUS INBOX (FOO)\r\n") == \
        "Error in IMAP command STATUS: Invalid status item FOO"


def test_enable_id_compress() -> None:
    assert parse(b"a ENABLE condstore QRESYNC\r\n") == Enable(("CONDSTORE", "QRESYNC"))
    assert parse(b'a ID ("name" "mutt" "version" NIL)\r\n') == \
        Id(((b"name", b"mutt"), (b"version", None)))
    assert parse(b"a ID NIL\r\n") == Id(None)
    assert parse(b"a COMPRESS DEFLATE\r\n") == Compress("DEFLATE")


def test_fetch_macros_expand() -> None:
    f = parse(b"a FETCH 1:* FULL\r\n")
    assert isinstance(f, Fetch)
    assert [a.name for a in f.atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                                       "BODY"]
    assert [a.name for a in parse(b"a FETCH 1 FAST\r\n").atts] == \
        ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]  # type: ignore[attr-defined]


def test_fetch_sections_partials_and_peek() -> None:
    f = parse(b"a FETCH 2,4:* (UID BODY.PEEK[1.2.HEADER.FIELDS (From \"To\")]<0.100> "
              b"BINARY[3]<5> BINARY.SIZE[1] BODY[1.MIME] RFC822.HEADER BODY[])\r\n")
    assert isinstance(f, Fetch)
    assert f.seqset == S(((2, 2), (4, 0)))
    assert f.atts == (
        FetchAtt("UID"),
        FetchAtt("BODY", Section((1, 2), "HEADER.FIELDS", ("FROM", "TO"), 'FROM "TO"'), (0, 100),
                 True),
        FetchAtt("BINARY", Section((3,)), (5, None)),
        FetchAtt("BINARY.SIZE", Section((1,))),
        FetchAtt("BODY", Section((1,), "MIME")),
        FetchAtt("RFC822.HEADER"),
        FetchAtt("BODY", Section()),
    )
    assert f.atts[1].response_name == 'BODY[1.2.HEADER.FIELDS (FROM "TO")]<0>'


def test_uid_fetch_adds_uid_and_changedsince_adds_modseq() -> None:
    f = parse(b"a UID FETCH 1:* FLAGS (CHANGEDSINCE 12345 VANISHED)\r\n",
              frozenset({"QRESYNC"}))
    assert f == Fetch(S(((1, 0),)), (FetchAtt("UID"), FetchAtt("FLAGS"), FetchAtt("MODSEQ")),
                      12345, True)


@pytest.mark.parametrize(("line", "text"), [
    (b"a FETCH 1 BODY[FOO]\r\n", "Invalid BODY[..] section"),
    (b"a FETCH 1 ()\r\n", "FETCH list is empty"),
    (b"a FETCH 0 FLAGS\r\n", "Invalid messageset"),
    (b"a FETCH 1 FOO\r\n", "Unknown parameter: FOO"),
    (b"a FETCH 1 BODY[]<x>\r\n", "Invalid BODY[..] parameter: Too big partial start"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE x)\r\n", "Invalid CHANGEDSINCE modseq"),
    (b"a FETCH 1 (FLAGS\r\n", "Missing ')'"),
])
def test_fetch_errors_name_the_problem(line: bytes, text: str) -> None:
    assert bad(line) == "Error in IMAP command FETCH: " + text


def test_store_modes_silent_flags_and_unchangedsince() -> None:
    assert parse(b"a STORE 1:3 +FLAGS.SILENT (\\seen $Junk)\r\n") == \
        Store(S(((1, 3),)), "+", True, ("\\Seen", "$Junk"))
    assert parse(b"a UID STORE 5 (UNCHANGEDSINCE 320162338) -FLAGS \\Deleted\r\n") == \
        Store(S(((5, 5),)), "-", False, ("\\Deleted",), 320162338)
    assert parse(b"a STORE 1 FLAGS ()\r\n") == Store(S(((1, 1),)), "", False, ())
    assert bad(b"a STORE 1 FLAGS (\\Foo)\r\n") == \
        "Error in IMAP command STORE: Invalid system flag \\FOO"


def test_copy_move_and_uid_expunge() -> None:
    assert parse(b"a COPY 1:2 Trash\r\n") == Copy(S(((1, 2),)), Mailbox("Trash", b"Trash"))
    assert parse(b"a UID MOVE 7 Trash\r\n") == Copy(S(((7, 7),)), Mailbox("Trash", b"Trash"))
    assert parse(b"a EXPUNGE\r\n") == Expunge(None)
    assert parse(b"a UID EXPUNGE 3:5\r\n") == Expunge(S(((3, 5),)))
    assert bad(b"a UID EXPUNGE x\r\n") == "Error in IMAP command UID EXPUNGE: Invalid uidset"


def test_search_program_is_a_tree() -> None:
    s = parse(b'a SEARCH CHARSET UTF-8 OR FROM "a b" (TO c SINCE 1-Feb-2020) NOT 1:5 '
              b"HEADER X-Foo bar LARGER 100 KEYWORD $Junk UID 3:*\r\n")
    assert isinstance(s, Search) and s.charset == "UTF-8" and s.returns is None
    k = SearchKey
    assert s.key == k("AND", children=(
        k("OR", children=(k("FROM", "a b"),
                          k("AND", children=(k("TO", "c"), k("SINCE", date(2020, 2, 1)))))),
        k("NOT", children=(k("SEQSET", S(((1, 5),))),)),
        k("HEADER", ("X-Foo", "bar")),
        k("LARGER", 100),
        k("KEYWORD", "$Junk"),
        k("UID", S(((3, 0),))),
    ))


def test_esearch_return_modseq_within_and_saved_result() -> None:
    s = parse(b'a UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) MODSEQ "/flags/\\\\draft" all 62 '
              b"YOUNGER 3600 $\r\n")
    assert isinstance(s, Search)
    assert s.returns == ("MIN", "MAX", "COUNT", "ALL", "SAVE")
    assert s.key.children == (
        SearchKey("MODSEQ", (ModSeqEntry("/flags/\\draft", "all"), 62)),
        SearchKey("YOUNGER", 3600),
        SearchKey("SEQSET", SeqSet((), saved=True)),
    )
    empty = parse(b"a SEARCH RETURN () ALL\r\n")
    assert isinstance(empty, Search) and empty.returns == ()


def test_search_dates_roll_over_like_dovecot() -> None:
    s = parse(b'a SEARCH SINCE 32-Jan-2000 BEFORE "1-jan-2001"\r\n')
    assert isinstance(s, Search)
    assert [c.arg for c in s.key.children] == [date(2000, 2, 1), date(2001, 1, 1)]


@pytest.mark.parametrize(("line", "text"), [
    (b"a SEARCH\r\n", "Missing search parameters"),
    (b"a SEARCH FOO\r\n", "Unknown argument FOO"),
    (b"a SEARCH OR 1\r\n", "Missing argument"),
    (b"a SEARCH ()\r\n", "No search parameters inside list"),
    (b"a SEARCH SINCE 1-Jan-2000x\r\n", "Invalid search date parameter"),
    (b"a SEARCH HEADER x\r\n", "Missing parameter for search key (for search key: HEADER)"),
    (b"a SEARCH RETURN (FOO) ALL\r\n", "Unknown SEARCH return option"),
    (b"a SEARCH ALL)\r\n", "Unexpected ')'"),
])
def test_search_errors(line: bytes, text: str) -> None:
    assert bad(line) == "Error in IMAP command SEARCH: " + text


def test_sort_and_thread() -> None:
    assert parse(b"a UID SORT RETURN (COUNT) (REVERSE ARRIVAL subject) UTF-8 SEEN\r\n") == \
        Sort(((True, "ARRIVAL"), (False, "SUBJECT")), "UTF-8", SearchKey("SEEN"), ("COUNT",))
    assert parse(b"a THREAD REFERENCES US-ASCII ALL\r\n") == \
        Thread("REFERENCES", "US-ASCII", SearchKey("ALL"))
    assert bad(b"a SORT (REVERSE) UTF-8 ALL\r\n") == \
        "Error in IMAP command SORT: Sort list ends with REVERSE"
    assert bad(b"a THREAD FOO UTF-8 ALL\r\n") == \
        "Error in IMAP command THREAD: Unknown thread algorithm"


def test_append_date_time_is_aware() -> None:
    assert parse_date_time(b" 1-Jul-2002 05:06:07 -0700") == \
        datetime(2002, 7, 1, 5, 6, 7, tzinfo=timezone(-timedelta(hours=7)))
    # as lenient as Dovecot: fields roll over, a zone that is not +-hhmm is UTC
    assert parse_date_time(b"31-Feb-2002 25:06:07 -0700") == \
        datetime(2002, 3, 4, 1, 6, 7, tzinfo=timezone(-timedelta(hours=7)))
    assert parse_date_time(b"1-Jan-2020 10:00:00 junk") == \
        datetime(2020, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert parse_date_time(b"1-Jan-2020 10:00:00 -2500") == \
        datetime(2020, 1, 2, 11, 0, 0, tzinfo=UTC)
    assert parse_date_time(b"1-Jul-2002") is None
    assert parse_date_time(b"1-Jan-2020 10:00:00") is None
    assert parse_date_time(b"1-Jan-2020  10:00:00 +0100") is None


def test_search_text_is_decoded_in_the_given_charset() -> None:
    s = parse(b"a SEARCH CHARSET ISO-8859-1 SUBJECT {1+}\r\n\xe4\r\n")
    assert isinstance(s, Search) and s.key == SearchKey("SUBJECT", "ä")
    u = parse(b"a SEARCH CHARSET UTF-8 SUBJECT {2+}\r\n\xc3\xa4\r\n")
    assert isinstance(u, Search) and u.key == SearchKey("SUBJECT", "ä")
    assert charset_supported("utf-8") and not charset_supported("X-NO-SUCH-CHARSET")
