"""Two processes appending, flagging and expunging one mailbox at the same time: nothing lost,
nothing doubled, UIDs strictly increasing and never reused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage.maildir.list import MaildirList
from tests.storage.writers import fork_writer, read_log, tokens_on_disk, uidlist_records
from tests.support.env import remove_dir, server_dir


@pytest.fixture
def root() -> Iterator[Path]:
    d = server_dir("storage-concurrency")
    yield d
    remove_dir(d)


def _run(root: Path, seconds: float) -> None:
    store = root / "Maildir"
    MaildirList(f"maildir:{store}").open("INBOX").close()
    logs = [root / f"writer{i}.log" for i in range(2)]
    pids = [fork_writer(store, logs[i], seed=1000 + i, seconds=seconds, expunge_share=0.2)
            for i in range(2)]
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "a writer failed"

    all_appended: dict[str, int] = {}
    all_expunging: set[str] = set()
    for log in logs:
        appended, expunging = read_log(log)
        uids = list(appended.values())
        assert uids == sorted(uids) and len(set(uids)) == len(uids), "UIDs not increasing"
        assert len(uids) > 20
        all_appended.update(appended)
        all_expunging |= expunging
    uids = list(all_appended.values())
    assert len(set(uids)) == len(uids), "two appends got the same UID"

    on_disk = tokens_on_disk(store)
    assert not {t: n for t, n in on_disk.items() if len(n) > 1}, "a message is doubled"
    lost = [t for t in all_appended if t not in all_expunging and t not in on_disk]
    assert not lost
    _, records = uidlist_records(store)
    by_base = {base: uid for uid, base in records.items()}
    for token, uid in all_appended.items():
        if token in on_disk:
            assert by_base[on_disk[token][0].split(":")[0]] == uid, "a message changed UID"
    box = MaildirList(f"maildir:{store}").open("INBOX")
    assert list(box.uids) == sorted(set(box.uids))
    assert len(box) == sum(len(n) for n in on_disk.values())


def test_two_writers_for_a_few_seconds(root: Path) -> None:
    _run(root, 5.0)


@pytest.mark.slow
def test_two_writers_for_thirty_seconds(root: Path) -> None:
    _run(root, 30.0)
