"""Crash safety: a writer SIGKILLed at random points of append, flag change, expunge and
uidlist rewrite, 200 times. Afterwards every completed append is there exactly once, no UID
was reused, UIDVALIDITY never changed, and Dovecot still reads the store."""

from __future__ import annotations

import imaplib
import os
import random
import signal
import time
from collections.abc import Iterator

import pytest

from cote.storage.maildir.list import MaildirList
from tests.storage.writers import fork_writer, read_log, tokens_on_disk, uidlist_records
from tests.support.dovecot import DovecotOracle

KILLS = 200


@pytest.fixture(scope="module")
def oracle() -> Iterator[DovecotOracle]:
    dc = DovecotOracle(users={"user1": "pass1"})
    (dc.dir / "mail").mkdir()
    yield dc
    dc.cleanup()


@pytest.mark.oracle
def test_sigkill_at_random_points_loses_and_doubles_nothing(oracle: DovecotOracle) -> None:
    root = oracle.user_maildir("user1")
    log = oracle.dir / "writer.log"
    ml = MaildirList(f"maildir:{root}")
    seed_box = ml.open("INBOX")
    seed_box.append(b"Subject: tok-seed-0\n\nfirst\n")
    uidvalidity = seed_box.uidvalidity
    ml.close()
    rnd = random.Random(1234)
    history: dict[int, str] = {}  # uid -> base name, as ever seen in dovecot-uidlist
    for i in range(KILLS):
        pid = fork_writer(root, log, seed=i, rewrite_every_expunge=True, expunge_share=0.3)
        time.sleep(rnd.uniform(0.0, 0.08))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, "writer failed"
        v, records = uidlist_records(root)
        assert v == uidvalidity
        for uid, base in records.items():
            assert history.setdefault(uid, base) == base, f"UID {uid} reused"

    appended, expunging = read_log(log)
    assert len(appended) > 40, "the writer hardly ever completed an append"
    # the store as a fresh reader sees it (assigns UIDs to files a crash left without one)
    ml = MaildirList(f"maildir:{root}")
    box = ml.open("INBOX")
    assert box.uidvalidity == uidvalidity
    assert list(box.uids) == sorted(set(box.uids))
    on_disk = tokens_on_disk(root)
    doubled = {t: names for t, names in on_disk.items() if len(names) > 1}
    assert not doubled
    missing = [t for t in appended if t not in expunging and t not in on_disk]
    assert not missing
    # a completed append keeps the UID it was given, unless it was being expunged
    v, records = uidlist_records(root)
    for uid, base in records.items():
        assert history.setdefault(uid, base) == base
    by_base = {base: uid for uid, base in records.items()}
    for token, uid in appended.items():
        if token in on_disk:
            (name,) = on_disk[token]
            assert by_base[name.split(":")[0]] == uid
    cote_uids = list(box.uids)
    assert len(cote_uids) == sum(len(n) for n in on_disk.values())
    ml.close()

    oracle.start()  # chowns the store to the mail user, as a real deployment has it
    imap = imaplib.IMAP4("127.0.0.1", oracle.ports["imap"])
    imap.login("user1", "pass1")
    typ, data = imap.select("INBOX")
    assert typ == "OK" and int(data[0]) == len(cote_uids)  # type: ignore[arg-type]
    typ, data = imap.uid("SEARCH", "ALL")
    assert [int(x) for x in data[0].split()] == cote_uids  # type: ignore[union-attr]
    typ, data = imap.status("INBOX", "(UIDVALIDITY)")
    assert f"UIDVALIDITY {uidvalidity}" in data[0].decode()  # type: ignore[union-attr]
    imap.logout()
