"""The hibernation record (sans-IO): round trips, the view diff, and refusal of bad input."""

from __future__ import annotations

import json
from array import array

import pytest

from cote.mailproc.imap.hibernate_session import view_changes
from cote.mailproc.imap.hibernate_state import (
    HibernateState,
    HibernateStateError,
    MailboxView,
    decode,
    encode,
)


def _state(n: int = 5) -> HibernateState:
    view = MailboxView(name="INBOX", readonly=False, uidvalidity=1234, highestmodseq=99,
                       uids=array("I", range(1, n + 1)), modseqs=array("Q", [7] * n),
                       flags=[(1 << 40) | 8] * n, recent=[n], reported_recent=1,
                       keyword_count=2, local_keywords=["$Junk"])
    return HibernateState(user="joe", session="s1", remote_ip="127.0.0.1",
                          local_ip="127.0.0.1", idle_tag="a1", idle_started=1.5,
                          enabled=["CONDSTORE", "QRESYNC"], condstore=True,
                          stats={"bytes_in": 10, "expunged": 2}, mailbox=view,
                          peer_uid=1000, added_out=17)


def test_round_trip() -> None:
    state = _state()
    line = encode(state)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == state
    bare = HibernateState(user="x")
    assert decode(encode(bare)) == bare


def test_large_view_is_compact() -> None:
    line = encode(_state(100_000))
    # raw: 4 + 8 octets of arrays and ~15 of flag text per message; zlib, base64: < 2 each
    assert len(line) < 200_000
    assert len(decode(line).mailbox.uids) == 100_000  # type: ignore[union-attr]


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(v=2), lambda d: d.update(user=""), lambda d: d.update(user=5),
    lambda d: d.update(stats={"x": "1"}), lambda d: d.update(enabled="CONDSTORE"),
    lambda d: d["mailbox"].update(uids="!!"), lambda d: d["mailbox"].update(flags=5),
    lambda d: d["mailbox"].update(uids=encode_uids([3, 2, 1])),
    lambda d: d["mailbox"].update(uids=encode_uids([1, 2])),
    lambda d: d.update(idle_started="now"), lambda d: d.update(condstore=1),
])
def test_malformed_records_are_refused(mutate: object) -> None:
    doc = json.loads(encode(_state(3)))
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(HibernateStateError):
        decode(json.dumps(doc).encode())
    with pytest.raises(HibernateStateError):
        decode(b"not json")


def encode_uids(uids: list[int]) -> str:
    view = MailboxView("INBOX", False, 1, 1, uids=array("I", uids))
    return str(json.loads(encode(HibernateState(user="u", mailbox=view)))["mailbox"]["uids"])


def test_view_changes_numbers_as_the_client_knows() -> None:
    view = MailboxView("INBOX", False, 1, 10, uids=array("I", [1, 2, 3, 4, 5]),
                       modseqs=array("Q", [1, 2, 3, 4, 5]), flags=[0, 0, 0, 0, 0])
    # 2 and 4 expunged, 3's flags changed, 5's modseq moved, 6 and 7 new
    changes = view_changes(view, [1, 3, 5, 6, 7], [0, 8, 0, 0, 0], [1, 3, 9, 10, 11])
    assert changes.expunged == [2, 4] and changes.expunged_seqs == (2, 4)
    assert changes.flags_changed == [3, 5] and changes.new == 2
    assert not changes.uidvalidity_changed
