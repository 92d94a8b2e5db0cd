"""Two processes appending, flagging and expunging one mailbox at the same time: nothing lost,
nothing doubled, UIDs strictly increasing and never reused."""

from __future__ import annotations

import imaplib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage.maildir.list import MaildirList
from tests.storage.conftest import as_vmail, cote_state, imap_state
from tests.storage.writers import fork_writer, read_log, tokens_on_disk, uidlist_records
from tests.support.dovecot import DovecotOracle
from tests.support.env import mail_user, remove_dir, server_dir


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


@pytest.mark.oracle
def test_cote_and_dovecot_writing_at_once(dovecot: DovecotOracle) -> None:
    """cote's writer and Dovecot's IMAP APPEND/EXPUNGE on one mailbox: the uidlist lock keeps
    them apart, nobody's mail is lost or doubled, and both see the same UIDs at the end."""
    store = dovecot.user_maildir("user1")
    imap = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"])
    imap.login("user1", "pass1")
    imap.select("INBOX")
    vmail = mail_user()
    log = dovecot.dir / "cote-writer.log"
    log.touch()
    os.chown(log, vmail.pw_uid, vmail.pw_gid)
    pid = fork_writer(store, log, seed=7, seconds=4.0, expunge_share=0.15, keywords=20,
                      user=(vmail.pw_uid, vmail.pw_gid))
    dovecot_tokens: dict[str, int] = {}
    deadline = time.monotonic() + 4.0
    n = 0
    while time.monotonic() < deadline:
        token = f"tok-dovecot-{n}"
        n += 1
        typ, data = imap.append("INBOX", None, None, f"Subject: {token}\r\n\r\nx\r\n".encode())
        assert typ == "OK"
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0])  # type: ignore[arg-type]
        assert m
        dovecot_tokens[token] = int(m.group(1))
        if n % 5 == 0:
            imap.noop()
            imap.uid("STORE", str(dovecot_tokens[f"tok-dovecot-{n - 3}"]), "+FLAGS", r"(\Seen)")
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the cote writer failed"
    imap.logout()

    appended, expunging = read_log(log)
    assert len(appended) > 10 and len(dovecot_tokens) > 10
    uids = list(appended.values()) + list(dovecot_tokens.values())
    assert len(set(uids)) == len(uids), "cote and Dovecot handed out the same UID"
    on_disk = tokens_on_disk(store)
    assert not {t: n for t, n in on_disk.items() if len(n) > 1}
    expected = {t for t in appended if t not in expunging} | set(dovecot_tokens)
    assert expected <= set(on_disk)
    state = imap_state(dovecot.ports["imap"], "user1", "pass1")
    with as_vmail():
        ml = MaildirList(f"maildir:{store}")
        mine = cote_state(ml)
        ml.close()
    assert mine["boxes"]["INBOX"] == state["boxes"]["INBOX"]
