"""LIST after another session's RENAME, the minimal case the two-session generator found
(seed 55): session B creates New1, session A renames it to New2, B selects a mailbox, A
creates New3. RFC 3501 (6.3.3, 6.3.8): a created mailbox exists and LIST returns it. cote
lists New3 in both sessions; Dovecot 2.3 with its default ``mailbox_list_index = yes``
leaves New3 out of both live sessions' LIST (a fresh session lists it), and with
``mailbox_list_index = no`` answers as cote does: docs/differences.md, IMAP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.imapd.conftest import Client, cote_client, dovecot_client, fill, normalize, users_of
from tests.support.dovecot import DovecotOracle, dovecot_available

EXTRA_PAIRS = ("lidx",)
"""The pair that the module's ``store`` (Dovecot's default list index) serves."""
STEPS = [(1, "CREATE New1"), (0, "RENAME New1 New2"), (1, "SELECT Sent"), (0, "CREATE New3")]
LIST = 'LIST "" *'


def play(dc: DovecotOracle, pair: str) -> tuple[list[bytes], list[bytes]]:
    """Dovecot's and cote's normalized answers to ``STEPS``, then each session's LIST."""
    answers: list[list[bytes]] = []
    for client, user in ((dovecot_client, f"dc{pair}"), (cote_client, f"cote{pair}")):
        sessions: list[Client] = [client(dc, user) for _ in range(2)]
        try:
            out = [normalize(sessions[who].command(command)) for who, command in STEPS]
            answers.append(out + [normalize(s.command(LIST)) for s in sessions])
        finally:
            for s in sessions:
                s.close()
    return answers[0], answers[1]


@pytest.fixture(scope="module")
def no_list_index() -> Iterator[DovecotOracle]:
    """A Dovecot that lists from the Maildir directories alone."""
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed")
    users = users_of(("noidx",))
    dc = DovecotOracle(users=users, extra_conf="mailbox_list_index = no\n").start()
    for user in users:
        fill(dc, user)
    yield dc
    dc.cleanup()


@pytest.mark.oracle
def test_list_after_other_sessions_rename_answers_like_dovecot_without_list_index(
        no_list_index: DovecotOracle) -> None:
    expected, got = play(no_list_index, "noidx")
    assert b'"." New3\r\n' in expected[-1] and b'"." New3\r\n' in expected[-2]
    assert got == expected


@pytest.mark.oracle
def test_dovecot_list_index_leaves_out_a_created_mailbox_cote_lists_it(
        store: DovecotOracle) -> None:
    """The documented difference, checked so the note goes when Dovecot changes."""
    expected, got = play(store, "lidx")
    assert got[:-2] == expected[:-2]
    assert [b'"." New3\r\n' in a for a in expected[-2:]] == [False, False]
    assert [b'"." New3\r\n' in a for a in got[-2:]] == [True, True]
    assert [a.replace(b'* LIST (\\HasNoChildren) "." New3\r\n', b"")
            for a in got[-2:]] == expected[-2:]
    fresh = dovecot_client(store, "dclidx")
    assert b'"." New3\r\n' in fresh.command(LIST)
    fresh.close()
