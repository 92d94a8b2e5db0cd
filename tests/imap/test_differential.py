"""The same command bytes to Dovecot and to cote's parser: both must call the same input BAD,
with the same text (cote's parser is responsible for every BAD in these cases)."""

from __future__ import annotations

import pytest

from tests.imap.conftest import OracleSession
from tests.imap.diffcases import CASES, QRESYNC_CASES
from tests.imap.oracle import cote_reply, dovecot_reply

_FAILS = ("BAD", "TAGBAD", "BYE")


def _compare(session: OracleSession, case: bytes, enabled: frozenset[str]) -> None:
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
