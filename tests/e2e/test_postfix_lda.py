"""Real Postfix runs ``mailbox_command = cote-lda …`` as the recipient, as Debian setups do
with dovecot-lda. The recipient is the local Unix account that owns the test mail store; the
userdb is a real Dovecot's (cote-lda reads its config file unchanged)."""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.dovecot import DovecotOracle
from tests.support.env import MAIL_USER, mail_user
from tests.support.postfix import PostfixInstance

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    dovecot: DovecotOracle
    postfix: PostfixInstance


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    mail_user()
    dc = DovecotOracle(users={MAIL_USER: "secret"}).start()
    command = (f'{REPO}/.venv/bin/cote-lda -c {dc.config_path} -d "$USER" -f "$SENDER" '
               f'-a "$RECIPIENT"')
    pf = PostfixInstance(f"mailbox_command = {command}\nhome_mailbox =\n").start()
    try:
        yield Setup(dc, pf)
    finally:
        pf.cleanup()
        dc.cleanup()


def test_postfix_mailbox_command_delivers_with_cote_lda(setup: Setup) -> None:
    with smtplib.SMTP("127.0.0.1", setup.postfix.port, timeout=10) as smtp:
        smtp.sendmail("carol@sender.example", [f"{MAIL_USER}@example.com"],
                      b"Subject: through cote-lda\r\nMessage-ID: <lda-pf@x>\r\n\r\nhi\r\n")
    deadline = time.monotonic() + 30
    while "status=" not in setup.postfix.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = setup.postfix.log_text()
    assert "status=sent (delivered to command:" in log, log[-2000:]
    imap = imaplib.IMAP4("127.0.0.1", setup.dovecot.ports["imap"])
    imap.login(MAIL_USER, "secret")
    _, data = imap.select("INBOX")
    _, fetched = imap.fetch(data[0], "(BODY.PEEK[HEADER])")
    imap.logout()
    header = fetched[0][1]
    assert b"Subject: through cote-lda" in header
    # Postfix's local(8) writes the trace headers; cote-lda, like dovecot-lda, adds none.
    assert header.count(b"Delivered-To:") == 1 and b"Return-Path: <carol@sender.example>" in header
