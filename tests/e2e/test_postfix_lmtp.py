"""Real Postfix delivers to cote over LMTP on a UNIX socket (``lmtp:unix:…``), as
``virtual_transport = lmtp:unix:private/dovecot-lmtp`` setups do.

cote's auth daemon answers the userdb lookups; Dovecot (same passwd-file, same store) reads
the result over IMAP; Postfix's own log says what cote answered.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.postfix import PostfixInstance

USER = "alice@example.com"


@dataclass
class Setup:
    dovecot: DovecotOracle
    postfix: PostfixInstance


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    dc = DovecotOracle(users={USER: "secret"}).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp")
    pf = None
    try:
        cote.start()
        pf = PostfixInstance(f"local_transport = lmtp:unix:{cote.socket_path('lmtp')}\n")
        pf.start()
        yield Setup(dc, pf)
    finally:
        if pf is not None:
            pf.cleanup()
        cote.cleanup()
        dc.cleanup()


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
