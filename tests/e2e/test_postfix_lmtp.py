"""Real Postfix delivers to cote over LMTP on a UNIX socket (``lmtp:unix:…``), as
``virtual_transport = lmtp:unix:private/dovecot-lmtp`` setups do.

Dovecot provides the userdb (auth socket linked into cote's base_dir) and reads the result over
IMAP; Postfix's own log says what cote answered.
"""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.dovecot import DovecotOracle
from tests.support.env import mail_user, remove_dir, server_dir
from tests.support.postfix import PostfixInstance

REPO = Path(__file__).resolve().parents[2]
USER = "alice@example.com"


@dataclass
class Setup:
    dovecot: DovecotOracle
    postfix: PostfixInstance


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    dc = DovecotOracle(users={USER: "secret"}).start()
    work = server_dir("cote-pf")
    vmail = mail_user()
    (work / "run").mkdir()
    os.symlink(f"{dc.base_dir}/auth-userdb", work / "run/auth-userdb")
    (work / "dovecot.conf").write_text(f"""\
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/cote.log
protocols = lmtp
mail_location = maildir:{dc.dir}/mail/%u
first_valid_uid = {vmail.pw_uid}
ssl = no
""")
    cote = subprocess.Popen([str(REPO / ".venv/bin/cote"), "-F", "-c", str(work / "dovecot.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    socket_path = work / "run/lmtp"
    deadline = time.monotonic() + 20
    while not socket_path.exists():
        if cote.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("cote's lmtp socket did not appear")
        time.sleep(0.05)
    pf = PostfixInstance(f"local_transport = lmtp:unix:{socket_path}\n").start()
    try:
        yield Setup(dc, pf)
    finally:
        pf.cleanup()
        cote.terminate()
        cote.wait(15)
        dc.cleanup()
        remove_dir(work)


def send(pf: PostfixInstance, rcpt: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "bob@sender.example"
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@sender.example>"
    msg.set_content("Hello from Postfix.\n.leading dot\n" + "text\n" * 2000)
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as smtp:
        smtp.send_message(msg)


def wait_for(predicate: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_postfix_delivers_through_cote_and_imap_sees_it(setup: Setup) -> None:
    subjects = [f"postfix lmtp {i}" for i in range(3)]
    for subject in subjects:
        send(setup.postfix, USER, subject)
    wait_for(lambda: setup.postfix.log_text().count("status=sent") >= 3, "3 deliveries")
    sent = [x for x in setup.postfix.log_text().splitlines() if "status=sent" in x]
    assert all(re.search(r"relay=.*lmtp.*, dsn=2\.0\.0, status=sent \(250 2\.0\.0 "
                         r"<alice@example\.com> \S+ Saved\)", x) for x in sent), sent
    imap = imaplib.IMAP4("127.0.0.1", setup.dovecot.ports["imap"])
    imap.login(USER, "secret")
    _, data = imap.select("INBOX")
    assert int(data[0]) == 3
    _, fetched = imap.fetch("1:3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT DELIVERED-TO RETURN-PATH)])")
    imap.logout()
    headers = b"".join(part[1] for part in fetched if isinstance(part, tuple))
    for subject in subjects:
        assert f"Subject: {subject}".encode() in headers
    assert headers.count(b"Delivered-To: alice@example.com") == 3
    assert headers.count(b"Return-Path: <bob@sender.example>") == 3


def test_unknown_user_bounces_at_rcpt(setup: Setup) -> None:
    send(setup.postfix, "nobody@example.com", "to nobody")
    wait_for(lambda: "status=bounced" in setup.postfix.log_text(), "the bounce")
    bounced = next(x for x in setup.postfix.log_text().splitlines() if "status=bounced" in x)
    assert "said: 550 5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com " \
           "(in reply to RCPT TO command)" in bounced
