"""cote's IMAP mail process against Dovecot's imap on identical Maildirs.

Every command of the fixed scripts and of a seeded random command sequence goes to both
servers; the responses must be identical once ``conftest.normalize`` masked what differs by
design (its docstring lists each masked difference).
"""

from __future__ import annotations

import pytest

from tests.imapd.conftest import cote_client, dovecot_client, normalize
from tests.support.dovecot import DovecotOracle

READ_SCRIPT = [
    "CAPABILITY", "NOOP", "NAMESPACE", "ID NIL", 'LIST "" *', 'LIST "" %', 'LIST "" ""',
    'LSUB "" *', 'LIST (SUBSCRIBED) "" *', 'LIST "" * RETURN (CHILDREN)',
    'LIST "" * RETURN (SUBSCRIBED)', 'LIST "" * RETURN (STATUS (MESSAGES UNSEEN))',
    'LIST "Archive" %', "STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN SIZE)",
    "STATUS Archive (MESSAGES UNSEEN)", "STATUS Nope (MESSAGES)", "EXAMINE INBOX",
    "FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)", "FETCH 1:* ENVELOPE",
    "UID FETCH 2:4 (ENVELOPE FLAGS RFC822.SIZE)",  # (envelopes cached: whole-batch lines)
    "FETCH 1:* BODYSTRUCTURE", "FETCH 1:* BODY", "FETCH 1:* ALL", "FETCH 1:* FAST",
    "FETCH 1:* FULL",
    "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])",
    "FETCH 1:* (BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM)])",
    "FETCH 1:* BODY.PEEK[]", "FETCH 1:* BODY.PEEK[TEXT]", "FETCH 1:* BODY.PEEK[HEADER]",
    "FETCH 3 (BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[1.MIME] BODY.PEEK[2.MIME])",
    "FETCH 3 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[1] BINARY.SIZE[2])",
    "FETCH 6 (BODY.PEEK[1] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT])",
    "FETCH 4 (BODY.PEEK[]<0.20> BODY.PEEK[TEXT]<100.30> BODY.PEEK[]<99999.10>)",
    "FETCH 1:* RFC822.HEADER", "FETCH 2 RFC822.SIZE", "FETCH 9 FLAGS", "FETCH 0 FLAGS",
    "UID FETCH 1:* FLAGS", "UID FETCH 3,5 (FLAGS BODY.PEEK[HEADER.FIELDS (DATE)])",
    "UID FETCH 100:* UID", "FETCH 1:* (UID FLAGS) ",
    "SEARCH ALL", "SEARCH SEEN", "SEARCH UNSEEN", "SEARCH FLAGGED", "SEARCH DELETED",
    "SEARCH ANSWERED", "SEARCH DRAFT", "SEARCH NEW", "SEARCH OLD", "SEARCH RECENT",
    "SEARCH KEYWORD $Label1", "SEARCH UNKEYWORD $Label1", "SEARCH FROM alice",
    "SEARCH TO alice", "SEARCH CC carol", "SEARCH SUBJECT hello", "SEARCH SUBJECT café",
    "SEARCH BODY lait", "SEARCH TEXT bye", "SEARCH TEXT alice", "SEARCH HEADER Message-ID m3",
    "SEARCH LARGER 1000", "SEARCH SMALLER 200", "SEARCH 2:4", "SEARCH UID 1,3:5",
    "SEARCH NOT SEEN", "SEARCH OR SEEN FLAGGED", "SEARCH (SEEN) (NOT DELETED)",
    "SEARCH SENTSINCE 15-Jul-2021", "SEARCH SENTBEFORE 15-Jul-2021", "SEARCH SENTON 16-Jul-2021",
    "SEARCH SINCE 1-Jan-2021", "SEARCH BEFORE 1-Jan-2021", "SEARCH ON 14-Jul-2021",
    "SEARCH CHARSET UTF-8 SUBJECT hello", "SEARCH CHARSET X-NOPE SUBJECT hello",
    "UID SEARCH ALL", "SEARCH RETURN (MIN MAX COUNT) ALL", "SEARCH RETURN () FLAGGED",
    "UID SEARCH RETURN (ALL) NOT SEEN", "SEARCH RETURN (COUNT) DELETED",
    "SEARCH RETURN (SAVE) SEEN", "FETCH $ FLAGS", "SEARCH UID $",
    "SORT (SUBJECT) UTF-8 ALL", "SORT (REVERSE DATE) UTF-8 ALL", "SORT (FROM ARRIVAL) UTF-8 ALL",
    "SORT (SIZE) UTF-8 ALL", "UID SORT (REVERSE SUBJECT DATE) UTF-8 NOT DELETED",
    "SORT (DISPLAYFROM) UTF-8 ALL", "SORT RETURN (MIN MAX) (DATE) UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "UID THREAD REFS UTF-8 ALL",
    "SEARCH YOUNGER 1000000000", "SEARCH OLDER 1",
    "STORE 1 +FLAGS (\\Flagged)", "CHECK", "CLOSE", "FETCH 1 FLAGS",
]

WRITE_SCRIPT = [
    "SELECT INBOX", "FETCH 2 (FLAGS BODY[TEXT])", "FETCH 2 FLAGS", "FETCH 4 BODY[]<0.10>",
    "FETCH 4 FLAGS", "STORE 1 +FLAGS (\\Flagged)", "STORE 1:2 -FLAGS.SILENT (\\Seen)",
    "STORE 3 FLAGS (\\Draft newkw)", "FETCH 1:* FLAGS", "UID STORE 2 +FLAGS (\\Answered)",
    "STORE 1:* +FLAGS.SILENT (other)", "FETCH 1:* FLAGS", "SEARCH KEYWORD newkw",
    "COPY 1:2 Archive", "UID COPY 3 Nope", "STATUS Archive (MESSAGES UIDNEXT)",
    "MOVE 1 Trash", "FETCH 1:* (UID FLAGS)", "UID MOVE 3 Archive", "STATUS Trash (MESSAGES)",
    "STORE 2 +FLAGS (\\Deleted)", "UID EXPUNGE 1:2", "SEARCH DELETED", "EXPUNGE",
    "FETCH 1:* UID", "CREATE Work", "CREATE Work.Sub", "CREATE Work", "CREATE INBOX",
    'LIST "" *', "RENAME Work Play", 'LIST "" *', "DELETE Play.Sub", "DELETE Play",
    "DELETE Nope", "SUBSCRIBE Trash", 'LSUB "" *', "UNSUBSCRIBE Trash", 'LSUB "" *',
    "SELECT Archive", "FETCH 1:* (FLAGS UID)", "UNSELECT", "FETCH 1 FLAGS",
    "ENABLE CONDSTORE", "SELECT INBOX", "FETCH 1:* (FLAGS MODSEQ)",
    "STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)", "SEARCH MODSEQ 1",
    "EXAMINE INBOX", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "UNSELECT",
]


def run_both(dc: DovecotOracle, commands: list[str]) -> None:
    theirs = dovecot_client(dc)
    ours = cote_client(dc)
    mismatches = []
    try:
        for command in commands:
            expected = normalize(theirs.command(command)).decode("latin-1")
            got = normalize(ours.command(command)).decode("latin-1")
            if got != expected:
                mismatches.append(f"{command}\n--- dovecot\n{expected}--- cote\n{got}")
    finally:
        theirs.command("LOGOUT")
        ours.command("LOGOUT")
        theirs.close()
        ours.close()
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.oracle
def test_read_commands_answer_like_dovecot(store: DovecotOracle) -> None:
    run_both(store, READ_SCRIPT)


@pytest.mark.oracle
def test_write_commands_answer_like_dovecot(store: DovecotOracle) -> None:
    run_both(store, WRITE_SCRIPT)
