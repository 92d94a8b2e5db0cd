"""Exactly-once delivery under crashes: real Postfix delivers 200 messages to cote over LMTP
while a killer thread SIGKILLs cote's lmtp processes at random moments. Postfix retries what it
could not finish; the delivery journal (mailproc/lmtp/journal.py) acknowledges a retry whose
message was already saved, so every message ends up in the Maildir exactly once.

Also, deterministically: a transaction repeated after its reply was lost is saved once, a
message without a transaction id is saved every time (as Dovecot), and a journal entry left
pending by a process that died before the rename does not hide the message.
"""

from __future__ import annotations

import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from cote.mailproc.lmtp.journal import JOURNAL_NAME, Journal
from tests.e2e.test_lmtp_delivery import converse
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import mail_user
from tests.support.postfix import PostfixInstance

USER = "alice@example.com"
COUNT = 200
RETRY_CONF = """\
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_destination_concurrency_failed_cohort_limit = 100
"""


@dataclass
class Setup:
    dovecot: DovecotOracle
    cote: CoteServer


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    dc = DovecotOracle(users={USER: "secret", "bob": "x"}, protocols="imap").start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp")
    try:
        cote.start()
        yield Setup(dc, cote)
    finally:
        cote.cleanup()
        dc.cleanup()


def lmtp_pids(master: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(master)],
                         capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()
            if line.split()[1:2] == ["cote/lmtp"]]


def message_ids(maildir: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for sub in ("new", "cur"):
        for f in (maildir / sub).iterdir():
            head = f.read_bytes().split(b"\n\n", 1)[0]
            match = re.search(rb"^Message-ID: <([^>]+)>", head, re.MULTILINE | re.IGNORECASE)
            ids[match.group(1).decode() if match else "?"] += 1
    return ids


def test_sigkilled_lmtp_processes_lose_and_duplicate_nothing(setup: Setup) -> None:
    assert setup.cote.process is not None
    master = setup.cote.process.pid
    pf = PostfixInstance(f"local_transport = lmtp:unix:{setup.cote.socket_path('lmtp')}\n"
                         + RETRY_CONF)
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        rng = random.Random(1234)
        while not stop.wait(rng.uniform(0.05, 0.5)):
            for pid in lmtp_pids(master):
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
                except ProcessLookupError:
                    pass

    try:
        pf.start()
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as smtp:
            for i in range(COUNT):
                msg = EmailMessage()
                msg["From"] = "sender@remote.example"
                msg["To"] = USER
                msg["Subject"] = f"crash {i}"
                msg["Message-ID"] = f"<crash{i}@remote.example>"
                msg.set_content(f"message {i}\n" + "line of text\n" * 400)
                smtp.send_message(msg)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            sent = pf.log_text().count("status=sent")
            if sent >= COUNT * 0.9:
                stop.set()  # let the last ones through without more kills
            if sent >= COUNT:
                break
            time.sleep(0.5)
        stop.set()
        thread.join()
        queue = subprocess.run(["postqueue", "-c", str(pf.config_dir), "-p"],
                               capture_output=True, text=True).stdout
        log = pf.log_text()
    finally:
        stop.set()
        pf.cleanup()
    ids = message_ids(setup.dovecot.user_maildir(USER))
    print(f"{len(kills)} kills, {log.count('status=deferred')} deferrals, "
          f"{setup.cote.log_text().count('(delivery journal)')} retries acknowledged "
          "from the journal")
    assert len(kills) >= 5, f"the killer only killed {len(kills)} processes"
    assert "Mail queue is empty" in queue, queue
    lost = [i for i in range(COUNT) if ids[f"crash{i}@remote.example"] == 0]
    twice = {k: n for k, n in ids.items() if n > 1}
    assert not lost, f"lost: {lost}"
    assert not twice, f"saved more than once: {twice}"
    assert sum(ids.values()) == COUNT
    # Postfix really did retry deliveries that the kills interrupted.
    assert "status=deferred" in log


RECEIVED = (b"Received: from client.example (client.example [192.0.2.1])\r\n"
            b"\tby mx.example.com (Postfix) with ESMTP id 4QWxyz1234\r\n"
            b"\tfor <bob>; Sun, 22 Nov 2026 03:00:00 +0000\r\n")


def transaction(setup: Setup, body: bytes, *, rcpt: str = "bob") -> bytes:
    lines = [b"LHLO c\r\nMAIL FROM:<s@example.com>\r\n", f"RCPT TO:<{rcpt}>\r\n".encode(),
             b"DATA\r\n", body + b".\r\n", b"QUIT\r\n"]
    return converse(socket.create_connection(("127.0.0.1", setup.cote.ports["lmtp"])), lines)


def stored_count(setup: Setup, marker: bytes) -> int:
    base = setup.dovecot.user_maildir("bob")
    return sum(marker in f.read_bytes() for sub in ("new", "cur") if (base / sub).exists()
               for f in (base / sub).iterdir())


def test_a_repeated_transaction_is_saved_once(setup: Setup) -> None:
    body = RECEIVED + b"Subject: retry\r\nMessage-ID: <retry1@x>\r\n\r\nonce\r\n"
    first = transaction(setup, body)
    second = transaction(setup, body)
    assert b"250 2.0.0 <bob> " in first and b"250 2.0.0 <bob> " in second
    assert stored_count(setup, b"<retry1@x>") == 1
    assert setup.cote.wait_for_log("msgid=<retry1@x>: already saved to INBOX")
    # The same bytes to another recipient, or under another queue id, are other deliveries.
    transaction(setup, body.replace(b"4QWxyz1234", b"4QWxyz9999"))
    assert stored_count(setup, b"<retry1@x>") == 2


def test_without_a_transaction_id_every_copy_is_saved(setup: Setup) -> None:
    body = b"Subject: no id\r\nMessage-ID: <noid@x>\r\n\r\ntwice\r\n"
    transaction(setup, body)
    transaction(setup, body)
    assert stored_count(setup, b"<noid@x>") == 2


def test_a_pending_entry_without_its_file_does_not_hide_the_message(setup: Setup) -> None:
    """The process died after recording the entry but before the rename: retry saves it."""
    body = RECEIVED + b"Subject: pending\r\nMessage-ID: <pending@x>\r\n\r\nlate\r\n"
    transaction(setup, body)
    maildir = setup.dovecot.user_maildir("bob")
    vmail = mail_user()  # as the mail user: SQLite's side files must stay writable for cote
    os.setegid(vmail.pw_gid)
    os.seteuid(vmail.pw_uid)
    journal = Journal(str(maildir), str(maildir), durable=False)
    try:
        rows = journal.db.execute("SELECT key, base FROM delivery").fetchall()
        key = next(k for k, base in rows if any(
            f.name.startswith(base + ",") and b"<pending@x>" in f.read_bytes()
            for f in (maildir / "new").iterdir()))
        journal.db.execute("UPDATE delivery SET state = 0, base = 'gone.M1P1.host' "
                           "WHERE key = ?", (key,))
        assert not journal.already_saved(key)
    finally:
        journal.close()
        os.seteuid(0)
        os.setegid(0)
    transaction(setup, body)
    assert stored_count(setup, b"<pending@x>") == 2
    assert (maildir / JOURNAL_NAME).exists()


def test_deliveries_survive_an_auth_daemon_restart(setup: Setup) -> None:
    """The lmtp process keeps its auth-master connection between lookups; when the auth
    daemon dies the next RCPT reconnects instead of failing."""
    assert setup.cote.process is not None
    assert b"250 2.0.0 <bob> " in transaction(setup, b"Subject: before\r\n\r\nx\r\n")
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(setup.cote.process.pid)],
                         capture_output=True, text=True).stdout
    auth = [int(x.split()[0]) for x in out.splitlines() if x.split()[1:2] == ["cote/auth"]]
    assert auth, out
    for pid in auth:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # the master starts a new auth process when asked
    replies = transaction(setup, b"Subject: after\r\n\r\nx\r\n")
    assert b"250 2.0.0 <bob> " in replies, (replies, setup.cote.log_text()[-2000:])
