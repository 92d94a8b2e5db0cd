"""cote-lda against dovecot-lda: the same config file, the same arguments, the same message.

Both read the oracle Dovecot's config (cote reads Dovecot configs unchanged) and ask its real
auth-userdb socket; exit codes, stderr and the stored messages must agree.
"""

from __future__ import annotations

import imaplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dovecot import DovecotOracle

REPO = Path(__file__).resolve().parents[2]
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
COTE_LDA = str(REPO / ".venv/bin/cote-lda")
MESSAGE = b"Subject: lda\r\nMessage-ID: <lda1@x>\r\n\r\nbody\r\n.dot line\r\n"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotOracle]:
    with DovecotOracle(users={"user1": "x", "user2": "x"}) as dc:
        imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        imap.login("user1", "x")
        imap.create("Folder")
        imap.logout()
        yield dc


def run(program: str, dc: DovecotOracle, args: list[str], message: bytes = MESSAGE
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([program, "-c", str(dc.config_path), *args], input=message,
                          capture_output=True, timeout=30)


def stored(dc: DovecotOracle, user: str, folder: str = "") -> list[Path]:
    base = dc.user_maildir(user) / folder if folder else dc.user_maildir(user)
    files = [*(base / "new").iterdir(), *(base / "cur").iterdir()]
    return sorted(files, key=lambda p: p.stat().st_mtime_ns)


def count(dc: DovecotOracle, user: str, mailbox: str) -> int:
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login(user, "x")
    _, data = imap.status(mailbox, "(MESSAGES)")
    imap.logout()
    return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


@pytest.mark.parametrize(("args", "folder", "message"), [
    (["-d", "user1", "-f", "bob@x.example"], "", MESSAGE),
    (["-d", "user1", "-m", "Missing"], "", MESSAGE),
    (["-d", "user1", "-m", "Bad/Name", "-o", "lda_mailbox_autocreate=yes"], "", MESSAGE),
    (["-d", "user1", "-m", "Folder", "-a", "alias@x.example"], ".Folder", MESSAGE),
    (["-d", "user2"], "", b"From bob@x.example  Sat Nov 21 10:00:00 2026\n" + MESSAGE),
    (["-d", "user2"], "", b"Subject: cr\r\n\r\nlone\rcr\r\nlast line ends in CR\r"),
], ids=["inbox", "missing folder falls back to INBOX", "invalid name falls back to INBOX",
        "existing folder", "mbox From_ line",
        "lone and final CR"])
def test_delivery_matches_dovecot_lda(dovecot: DovecotOracle, args: list[str], folder: str,
                                      message: bytes) -> None:
    user = args[1]
    theirs = run(DOVECOT_LDA, dovecot, args, message)
    ours = run(COTE_LDA, dovecot, args, message)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) == (0, b"")
    their_file, our_file = stored(dovecot, user, folder)[-2:]
    assert our_file.read_bytes() == their_file.read_bytes()


def test_unknown_user_exits_ex_nouser(dovecot: DovecotOracle) -> None:
    theirs = run(DOVECOT_LDA, dovecot, ["-d", "nosuch"])
    ours = run(COTE_LDA, dovecot, ["-d", "nosuch"])
    assert ours.returncode == theirs.returncode == 67
    assert ours.stdout == theirs.stdout == b""


def test_storage_failure_is_a_tempfail_with_the_reason_on_stderr(dovecot: DovecotOracle) -> None:
    args = ["-d", "user1", "-e", "-o", "mail_location=maildir:/nonexistent/%u"]
    before = count(dovecot, "user1", "INBOX")
    theirs = run(DOVECOT_LDA, dovecot, args)
    ours = run(COTE_LDA, dovecot, args)
    assert ours.returncode == theirs.returncode == 75
    prefix = b"Internal error occurred. Refer to server log for more information."
    assert theirs.stderr.startswith(prefix) and ours.stderr.startswith(prefix)
    assert count(dovecot, "user1", "INBOX") == before


def test_dovecot_reads_what_cote_lda_delivered(dovecot: DovecotOracle) -> None:
    before = count(dovecot, "user1", "Folder")
    assert run(COTE_LDA, dovecot, ["-d", "user1", "-m", "Folder"]).returncode == 0
    assert count(dovecot, "user1", "Folder") == before + 1


def subscriptions(dc: DovecotOracle, user: str) -> list[str]:
    path = dc.user_maildir(user) / "subscriptions"
    return path.read_text().split("\n") if path.exists() else []


def test_missing_folder_is_created_and_subscribed_with_autocreate(dovecot: DovecotOracle) -> None:
    """lda_mailbox_autocreate / lda_mailbox_autosubscribe: each program gets its own new
    folder; both are created, subscribed and hold the same bytes."""
    opts = ["-o", "lda_mailbox_autocreate=yes", "-o", "lda_mailbox_autosubscribe=yes"]
    theirs = run(DOVECOT_LDA, dovecot, ["-d", "user2", "-m", "Auto.Theirs", *opts])
    ours = run(COTE_LDA, dovecot, ["-d", "user2", "-m", "Auto.Ours", *opts])
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) == (0, b"")
    their_file = stored(dovecot, "user2", ".Auto.Theirs")[-1]
    our_file = stored(dovecot, "user2", ".Auto.Ours")[-1]
    assert our_file.read_bytes() == their_file.read_bytes()
    subscribed = subscriptions(dovecot, "user2")
    assert "Auto\tTheirs" in subscribed and "Auto\tOurs" in subscribed
    assert count(dovecot, "user2", "Auto.Ours") == 1
    # Without autosubscribe the folder is created but not subscribed (as dovecot-lda).
    opts = ["-o", "lda_mailbox_autocreate=yes"]
    assert run(DOVECOT_LDA, dovecot, ["-d", "user2", "-m", "Plain1", *opts]).returncode == 0
    assert run(COTE_LDA, dovecot, ["-d", "user2", "-m", "Plain2", *opts]).returncode == 0
    subscribed = subscriptions(dovecot, "user2")
    assert "Plain1" not in subscribed and "Plain2" not in subscribed
    assert count(dovecot, "user2", "Plain2") == 1


def test_a_retried_mta_delivery_is_saved_once(dovecot: DovecotOracle) -> None:
    """The delivery journal also covers cote-lda: Postfix runs mailbox_command again when the
    previous run died after saving; the same queued message (Received id) is saved once.
    dovecot-lda saves it twice (docs/differences.md)."""
    message = (b"Received: by mx.example.com (Postfix) with ESMTP id 4LdaRetry1\n"
               b"Subject: retry\nMessage-ID: <lda-retry@x>\n\nonce\n")
    before = count(dovecot, "user2", "INBOX")
    for _ in range(2):
        assert run(COTE_LDA, dovecot, ["-d", "user2", "-f", "a@x.example"], message).returncode == 0
    assert count(dovecot, "user2", "INBOX") == before + 1
    log = dovecot.log_path.read_text()
    assert "msgid=<lda-retry@x>: already saved to INBOX by an earlier attempt" in log
