"""``maildirsize``: format, when it is trusted, recalculation, concurrent appenders."""

from __future__ import annotations

import os
import time
from multiprocessing import Process
from pathlib import Path

from cote.storage.quota import maildirsize as mds
from tests.storage2.conftest import message, open_cote

PLUGIN = {"quota": "maildir:Q", "quota_rule": "*:storage=10k:messages=100"}


def test_limits_line() -> None:
    assert mds.format_limits(0, 0) == "0S"
    assert mds.format_limits(1024, 0) == "1024S"
    assert mds.format_limits(0, 5) == "5C"
    assert mds.format_limits(1024, 5) == "1024S,5C"
    assert mds.parse_limits("1024S,5C") == (1024, 5)
    assert mds.parse_limits("5C") == (0, 5)
    assert mds.parse_limits("junk") is None


def test_parse_sums_lines_and_ignores_an_unfinished_one() -> None:
    m = mds.parse(b"10240S\n100 2\n50 1\n-30 -1\n77 ")
    assert m is not None
    assert (m.bytes_limit, m.total_bytes, m.total_count, m.lines) == (10240, 120, 2, 3)
    assert mds.parse(b"10240S\n100 x\n") is None
    assert mds.parse(b"10240S\n") is None
    assert mds.parse(b"10240S\n" + b"1 1\n" * 2000) is None  # too large: recalculate


def test_trust_rules() -> None:
    now = time.time()
    ok = mds.Maildirsize(10240, 0, 100, 1, 3, now)
    assert mds.trustworthy(ok, 10240, 0, now)
    assert not mds.trustworthy(ok, 20480, 0, now)          # limits changed
    assert not mds.trustworthy(ok._replace(total_bytes=-1), 10240, 0, now)
    over = ok._replace(total_bytes=20000)
    assert not mds.trustworthy(over, 10240, 0, now)         # over quota with deltas
    assert mds.trustworthy(over._replace(lines=1), 10240, 0, now)
    assert not mds.trustworthy(over._replace(lines=1, mtime=now - 901), 10240, 0, now)


def test_recalculated_when_wrong(store: Path) -> None:
    root = store / "m"
    mailboxes, quota = open_cote(root, plugin=PLUGIN)
    path = root / "maildirsize"
    assert path.read_text() == "10240S,100C\n0 0\n"
    with mailboxes.open("INBOX") as box:
        box.append(message(1000))
        box.append(message(500))
    assert path.read_text() == "10240S,100C\n0 0\n1000 1\n500 1\n"
    path.write_text("10240S,100C\n-5 0\n")                  # negative: recalculated
    assert quota.resources("Q") == [("STORAGE", 2, 10), ("MESSAGE", 2, 100)]
    assert path.read_text() == "10240S,100C\n1500 2\n"
    path.write_text("20480S\n9 9\n")                        # other limits: recalculated
    assert quota.roots[0].usage() == (1500, 2)
    assert path.read_text() == "10240S,100C\n1500 2\n"
    os.unlink(path)                          # missing: recalculated by the check, then delta
    with mailboxes.open("INBOX") as box:
        box.append(message(100))
    assert path.read_text() == "10240S,100C\n1500 2\n100 1\n"
    # a recalculation in progress elsewhere (its lock exists): keep the file, still answer
    (root / "maildirsize.lock").write_text("x")
    path.write_text("10240S,100C\n-1 0\n")
    assert quota.roots[0].usage() == (1600, 3)
    assert path.read_text() == "10240S,100C\n-1 0\n"
    mailboxes.close()


def _appender(root: str, n: int) -> None:
    mailboxes, _ = open_cote(root, plugin=PLUGIN)
    with mailboxes.open("INBOX") as box:
        for _ in range(n):
            box.append(message(60))
    mailboxes.close()


def test_concurrent_appenders_keep_exact_totals(store: Path) -> None:
    root = store / "c"
    mailboxes, _ = open_cote(root, plugin=PLUGIN)
    procs = [Process(target=_appender, args=(str(root), 10)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    m = mds.read(str(root / "maildirsize"))
    assert m is not None and (m.total_bytes, m.total_count) == (1800, 30)
    assert mds.count_dirs([str(root)]) == (1800, 30)
    mailboxes.close()


def test_is_over(store: Path) -> None:
    plugin = {"quota": "maildir:Q", "quota_rule": "*:storage=1k:messages=2",
              "quota_rule2": "Junk:ignore"}
    mailboxes, quota = open_cote(store / "o", plugin=plugin)
    assert not quota.is_over()
    with mailboxes.open("INBOX") as box:
        box.append(message(300))
        assert not quota.is_over()
        box.append(message(300))
    assert quota.is_over() and not quota.is_over("Junk")  # the message limit is reached
    mailboxes.close()
