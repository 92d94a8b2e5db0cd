"""cote-lda against dovecot-lda when the quota refuses a message: exit codes per -e and
quota_full_tempfail, and without -e the rejection mail (postmaster_address, rejection_subject,
rejection_reason, the delivery-status report) that both hand to sendmail_path, byte for byte
once the Message-ID, Date and MIME boundary (pid/host) are masked."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.test_lda import COTE_LDA, DOVECOT_LDA
from tests.support.dovecot import DovecotOracle

QUOTA = """\
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=1K
}
"""
BIG = (b"Return-Path: <old@x.example>\nFrom: Bob <bob@x.example>\nSubject: big one\n"
       b"Message-ID: <big@x>\nTo: user1@example.com\nX-Folded: a\n\tb\n\n" + b"x" * 3000 + b"\n")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotOracle]:
    with DovecotOracle(users={"user1": "x", "user2@example.org": "x"}, extra_conf=QUOTA) as dc:
        yield dc


def run(program: str, dc: DovecotOracle, args: list[str], message: bytes = BIG
        ) -> tuple[int, bytes, bytes]:
    """(exit code, stderr, what the sendmail stand-in received: its arguments, then stdin)."""
    capture = dc.dir / f"sent-{os.path.basename(program)}"
    capture.write_bytes(b"")
    capture.chmod(0o666)
    script = dc.dir / "sendmail.sh"
    script.write_text(f'#!/bin/sh\necho "ARGS: $*" >> {capture}\ncat >> {capture}\n')
    script.chmod(0o755)
    result = subprocess.run([program, "-c", str(dc.config_path), "-o", f"sendmail_path={script}",
                             *args], input=message, capture_output=True, timeout=30)
    return result.returncode, result.stderr, capture.read_bytes()


def mask(sent: bytes) -> bytes:
    sent = re.sub(rb"<dovecot-\d+-\d+-\d+@", b"<dovecot-ID@", sent)
    sent = re.sub(rb"\nDate: [^\r\n]+", b"\nDate: DATE", sent)
    return re.sub(rb"\d+/([\w.-]+)", rb"PID/\1", sent)


@pytest.mark.parametrize("args", [
    ["-d", "user1", "-f", "bob@x.example", "-a", "alias@example.com"],
    ["-d", "user2@example.org", "-f", "bob@x.example"],
    ["-d", "user1"],
    ["-d", "user1", "-o", "postmaster_address=hostmaster@example.net",
     "-o", "rejection_subject=Bounced [%s]", "-o", "rejection_reason=No room for <%t>: %r",
     "-o", "hostname=mx.example.net"],
], ids=["with -a", "domain user: postmaster@domain", "sender from Return-Path", "settings"])
def test_rejection_mail_matches_dovecot(dovecot: DovecotOracle, args: list[str]) -> None:
    theirs = run(DOVECOT_LDA, dovecot, args)
    ours = run(COTE_LDA, dovecot, args)
    assert ours[:2] == theirs[:2] == (0, b"")
    assert b"Content-Type: message/delivery-status" in theirs[2]
    assert mask(ours[2]) == mask(theirs[2])


@pytest.mark.parametrize("extra", [["-e"], ["-o", "quota_full_tempfail=yes"]],
                         ids=["-e", "quota_full_tempfail"])
def test_refusal_exit_codes_match_dovecot(dovecot: DovecotOracle, extra: list[str]) -> None:
    args = ["-d", "user1", "-f", "bob@x.example", *extra]
    theirs = run(DOVECOT_LDA, dovecot, args)
    ours = run(COTE_LDA, dovecot, args)
    assert ours == theirs
    assert theirs[0] in (75, 77) and theirs[2] == b""


def test_no_rejection_to_an_auto_submitted_message(dovecot: DovecotOracle) -> None:
    message = b"Auto-Submitted: auto-replied\n" + BIG
    theirs = run(DOVECOT_LDA, dovecot, ["-d", "user1", "-f", "bob@x.example"], message)
    ours = run(COTE_LDA, dovecot, ["-d", "user1", "-f", "bob@x.example"], message)
    assert ours == theirs
    assert theirs[2] == b""
