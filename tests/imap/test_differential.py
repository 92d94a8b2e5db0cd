"""The same command bytes to Dovecot and to cote's parser: both must call the same input BAD,
with the same text (cote's parser is responsible for every BAD in these cases)."""

from __future__ import annotations

import random

import pytest

from tests.imap.conftest import OracleSession
from tests.imap.diffcases import CASES, IDLE_CASES, PRE_LOGIN_CASES, QRESYNC_CASES
from tests.imap.oracle import RawImap, cote_reply, dovecot_reply
from tests.support.dovecot import DovecotOracle

_FAILS = ("BAD", "TAGBAD", "BYE")


def _compare(session: OracleSession, case: bytes, enabled: frozenset[str]) -> None:
    theirs = dovecot_reply(session.raw, b"t", case)
    if theirs == ("BAD", b"No mailbox selected"):  # an earlier failed SELECT closed INBOX
        session.raw.exchange(b"s SELECT INBOX\r\n")
        theirs = dovecot_reply(session.raw, b"t", case)
    if theirs[0] in ("BYE", "NONE"):
        session.reconnect()
    ours = cote_reply(case, enabled)
    assert ours[0] != "NEED_DATA", (case, ours)
    assert (theirs[0] in _FAILS) == (ours[0] in _FAILS), (case, theirs, ours)
    if theirs[0] in _FAILS:
        assert ours == theirs, case


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c[:60]))
def test_bad_classification_and_text_match_dovecot(oracle_session: OracleSession,
                                                   case: bytes) -> None:
    _compare(oracle_session, case, frozenset())


@pytest.mark.parametrize("case", QRESYNC_CASES, ids=lambda c: repr(c[:60]))
def test_qresync_grammar_matches_dovecot_once_enabled(qresync_session: OracleSession,
                                                      case: bytes) -> None:
    _compare(qresync_session, case, frozenset({"QRESYNC", "CONDSTORE"}))


@pytest.mark.parametrize("case", PRE_LOGIN_CASES, ids=lambda c: repr(c[:60]))
def test_pre_login_dialect_matches_dovecot_imap_login(dovecot: DovecotOracle,
                                                      case: bytes) -> None:
    raw = RawImap(dovecot.ports["imap"])
    try:
        theirs = dovecot_reply(raw, b"t", case)
    finally:
        raw.close()
    ours = cote_reply(case, pre_login=True)
    assert (theirs[0] in _FAILS) == (ours[0] in _FAILS), (case, theirs, ours)
    if theirs[0] in _FAILS:
        assert ours == theirs, case


@pytest.mark.parametrize("case", IDLE_CASES, ids=lambda c: repr(c[:60]))
def test_idle_mode_matches_dovecot(oracle_session: OracleSession, case: bytes) -> None:
    _compare(oracle_session, case, frozenset())


_TOKENS = [b"(", b")", b"NIL", b'"x"', b"1", b"*", b"1:*", b"$", b"ALL", b"FLAGS", b"UID",
           b"BODY[]", b"BODY[1]", b"()", b"\\Seen", b"HEADER", b"<0.1>", b"-1", b"0",
           b"4294967296", b"INBOX", b'""', b"RETURN", b"(MIN)", b"CHARSET", b"UTF-8", b"x",
           b"[", b"]"]
_SAFE = [c for c in CASES if len(c) < 300 and b"{" not in c and c.startswith(b"t ")
         and not any(w in c for w in (b"RENAME", b"CREATE", b"DELETE", b"EXPUNGE", b"MOVE",
                                      b"APPEND", b"UNSUBSCRIBE", b"SUBSCRIBE"))]


def _mutations(seed: int, count: int) -> list[bytes]:
    """Valid and invalid commands made by deleting, inserting or replacing arguments (or
    dropping one octet) of the cases above: the shapes nobody thinks of writing by hand."""
    rng = random.Random(seed)
    out: list[bytes] = []
    while len(out) < count:
        words = rng.choice(_SAFE).rstrip(b"\r\n").split(b" ")
        op = rng.randrange(5)
        if op == 0 and len(words) > 2:
            del words[rng.randrange(2, len(words))]
        elif op == 1:
            words.insert(rng.randrange(2, len(words) + 1), rng.choice(_TOKENS))
        elif op == 2 and len(words) > 2:
            words[rng.randrange(2, len(words))] = rng.choice(_TOKENS)
        elif op == 3:
            line = b" ".join(words)
            k = rng.randrange(2, len(line))
            words = (line[:k] + line[k + 1:]).split(b" ")
        case = b" ".join(words) + b"\r\n"
        if case.startswith(b"t ") and case not in out:
            out.append(case)
    return out


@pytest.mark.parametrize("case", _mutations(20261122, 150), ids=lambda c: repr(c[:60]))
def test_mutated_commands_match_dovecot(oracle_session: OracleSession, case: bytes) -> None:
    _compare(oracle_session, case, frozenset())
