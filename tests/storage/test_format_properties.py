"""Property tests: every uidlist, keywords and subscriptions file cote writes reads back the
same, and parsing arbitrary bytes never raises anything but the documented error."""

from __future__ import annotations

from array import array
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cote.storage import subscriptions as subs
from cote.storage.maildir import keywords as kw
from cote.storage.maildir import uidlist as ul
from cote.storage.notify import PollingWatcher

base_chars = st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters=":\n ")
bases = st.text(base_chars, min_size=1, max_size=30)
exts = st.lists(st.sampled_from(["W1234", "P0000abcd", "O7", "G0123456789abcdef"]),
                max_size=3, unique=True).map(" ".join)


@given(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1),
       st.lists(st.tuples(st.integers(1, 1000), exts, bases), max_size=40))
def test_uidlist_round_trip(uidvalidity: int, next_uid: int,
                            records: list[tuple[int, str, str]]) -> None:
    uidlist = ul.Uidlist(uidvalidity=uidvalidity, next_uid=next_uid, guid="ab" * 16)
    uid = 0
    for step, ext, base in records:
        uid += step
        uidlist.add(uid, base, ext)
    data = ul.format(uidlist)
    back = ul.parse(data)
    assert (back.uidvalidity, back.guid) == (uidvalidity, "ab" * 16)
    assert back.uids == array("I", uidlist.uids) and back.bases == uidlist.bases
    assert back.exts == uidlist.exts
    assert back.next_uid == uidlist.real_next_uid >= next_uid
    assert ul.format(back) == data


@given(st.integers(0, 5),
       st.lists(st.tuples(st.integers(0, 2**33), exts, st.sampled_from(["", "b", "c,S=1"])),
                max_size=12))
def test_uidlist_records_follow_the_rule_in_any_order(last: int,
                                                      records: list[tuple[int, str, str]]
                                                      ) -> None:
    """Whole columns at once when the records are in order, one by one otherwise: either
    way a record counts only with a 32-bit UID above the last one kept and a base name."""
    text = "".join(f"{uid} {ext} :{base}\n" for uid, ext, base in records)
    parsed = ul.Uidlist(uidvalidity=1)
    if last:
        parsed.add(last, "first")
    ul.parse_records(parsed, text)
    want: list[tuple[int, str, str]] = [(last, "", "first")] if last else []
    for uid, ext, base in records:
        if (want[-1][0] if want else 0) < uid < 2**32 and base:
            want.append((uid, ext, base))
    assert list(zip(parsed.uids, parsed.exts, parsed.bases, strict=True)) == want


record_lines = st.lists(st.builds(
    "".join,
    st.tuples(st.sampled_from(["7", "123", "", "\u0663", "\u00b2", " 1", "x"]),
              st.sampled_from([" ", "", "  "]), exts, st.sampled_from([":", "", "::"]),
              bases, st.sampled_from(["", ":2,S", " W1"]))),
    max_size=12)


@given(record_lines, st.booleans())
def test_uidlist_record_columns_are_the_regular_expressions(lines: list[str],
                                                           torn: bool) -> None:
    """The C-level column split of whole record lines gives exactly what the record
    pattern finds, or declines (None) and leaves the lines to the pattern."""
    text = "".join(line + "\n" for line in lines) + ("12 :torn" if torn else "")
    columns = ul._v3_columns(text)
    records = ul._V3_RECORD.findall(text)
    if columns is not None:
        assert list(zip(*columns, strict=True)) == records


@given(st.binary(max_size=300))
def test_uidlist_parser_never_crashes(data: bytes) -> None:
    try:
        parsed = ul.parse(data)
    except ul.UidlistError:
        return
    assert list(parsed.uids) == sorted(set(parsed.uids))


@given(st.lists(st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s),
                max_size=10))
def test_subscriptions_round_trip(names: list[str]) -> None:
    nested = [(n, n + "x") for n in names]
    unique = list(dict.fromkeys(nested))
    assert subs.parse(subs.format(unique), ".") == unique


@given(st.lists(st.one_of(st.none(), st.text(st.characters(min_codepoint=33,
                                                            max_codepoint=0x2FF),
                                             min_size=1, max_size=10)),
                min_size=26, max_size=26))
def test_keywords_round_trip(slots: list[str | None]) -> None:
    seen: set[str] = set()
    clean: list[str | None] = []
    for s in slots:
        clean.append(None if s is None or s in seen else s)
        if s is not None:
            seen.add(s)
    assert kw.parse(kw.format(clean)) == clean


def test_polling_watcher_fallback_sees_changes(tmp_path: Path) -> None:
    w = PollingWatcher([str(tmp_path)], interval=0.02)
    try:
        assert not w.wait(0.05)
        (tmp_path / "x").write_bytes(b"")
        assert w.wait(1)
    finally:
        w.close()
