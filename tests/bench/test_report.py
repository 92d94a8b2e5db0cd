"""The bench verdict: errors and wrong answers fail a run, an unavailable cote is shown as such."""

from __future__ import annotations

from collections import Counter

from bench.report import Figure, Summary


def summary() -> Summary:
    return Summary("imap-mixed", {"runs": 3, "seconds": 10})


def test_clean_figures_give_ok_with_min_median_max_and_ratio() -> None:
    s = summary()
    for value in (90.0, 100.0, 95.0):
        s.add("dovecot", Figure("10 clients", "sessions/s", value, True, 0.05, 0.2))
    for value in (120.0, 110.0, 130.0):
        s.add("cote", Figure("10 clients", "sessions/s", value, True, 0.04, 0.1))
    table = s.table(["dovecot", "cote"])
    assert s.ok
    assert "| 10 clients       | sessions/s   | dovecot  |      95.00 |      90.00 |" in table
    assert s.ratio("10 clients", "sessions/s") == 120 / 95
    assert "1.26x" in table and table.count("|  yes |") == 1
    assert table.splitlines()[-1] == "RESULT: OK (cote ok, dovecot ok)"


def test_any_error_fails_the_run() -> None:
    s = summary()
    s.add("dovecot", Figure("1 client", "sessions/s", 50.0, True,
                            errors=Counter({"session: ProtocolError: SELECT: NO": 2})))
    assert not s.ok
    table = s.table(["dovecot"])
    assert "2 x dovecot 1 client: session: ProtocolError: SELECT: NO" in table
    assert table.splitlines()[-1] == "RESULT: FAILED (dovecot 2 errors)"


def test_unavailable_cote_is_reported_with_its_reason_and_no_figures() -> None:
    s = summary()
    s.add("dovecot", Figure("10 clients", "sessions/s", 97.0, True))
    s.unavailable["cote"] = "no imap: service imap: not implemented yet, not started"
    table = s.table(["dovecot", "cote"])
    assert s.ok
    assert ("| cote: not available (no imap: service imap: not implemented yet, not started) |"
            in table)
    assert s.ratio("10 clients", "sessions/s") is None
    assert table.splitlines()[-1] == "RESULT: OK (dovecot ok, cote not available)"
    assert s.record()["unavailable"] == {"cote": s.unavailable["cote"]}


def test_a_different_answer_from_cote_fails_it() -> None:
    s = Summary("search", {"runs": 1, "seconds": 10})
    s.add("dovecot", Figure("TEXT", "SEARCH s", 8.0, False, extra={"hits": 100}))
    s.add("cote", Figure("TEXT", "SEARCH s", 0.1, False, extra={"hits": 99}))
    s.compare_answers()
    assert not s.ok
    assert s.failures == {"cote": ["TEXT SEARCH s: hits [99], Dovecot [100]"]}


def test_memory_target_is_absolute() -> None:
    s = Summary("idle-memory", {"runs": 1})
    s.add("dovecot", Figure("plain", "MB/conn", 0.47, False))
    s.add("cote", Figure("plain", "MB/conn", 0.08, False))
    target = s.target("plain", "MB/conn")
    assert target is not None
    assert target.met(0.08, s.ratio("plain", "MB/conn")) is True
    assert target.met(0.2, None) is False
