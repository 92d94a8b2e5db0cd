"""Real IMAP clients against cote's PREAUTH mail process: mbsync (isync) synchronises a
Maildir through a ``Tunnel`` (cote on stdin/stdout, as Dovecot's imap binary is used), both
ways: messages down, flag changes and a new message up."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imapd.conftest import MESSAGES, cote_client
from tests.support.dovecot import DovecotOracle
from tests.support.env import mail_user, remove_dir, server_dir


def mbsync(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mbsync", "-c", str(config), "-a"], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync is not installed")
def test_mbsync_through_a_tunnel(store: DovecotOracle) -> None:
    vmail = mail_user()
    local = server_dir("imapd-mbsync")
    try:
        tunnel = (f"{sys.executable} -m cote.mailproc.imap -u cotemisc --mail "
                  f"maildir:{store.user_maildir('cotemisc')} --uid {vmail.pw_uid} "
                  f"--gid {vmail.pw_gid}")
        (local / "mail").mkdir()
        config = local / "mbsyncrc"
        config.write_text(f"""\
IMAPStore remote
Tunnel "{tunnel}"

MaildirStore local
Path {local}/mail/
Inbox {local}/mail/INBOX

Channel all
Far :remote:
Near :local:
Patterns INBOX Archive
Create Near
Sync All
SyncState *
""")
        first = mbsync(config)
        assert first.returncode == 0, first.stderr
        inbox = local / "mail" / "INBOX"
        files = sorted((inbox / "cur").iterdir()) + sorted((inbox / "new").iterdir())
        assert len(files) == len(MESSAGES)
        # mbsync adds its X-TUID header to what it downloads
        contents = {re.sub(rb"X-TUID: [^\n]*\n", b"", f.read_bytes().replace(b"\r\n", b"\n"))
                    for f in files}
        assert contents == {m.replace(b"\r\n", b"\n") for _, m in MESSAGES}
        # flag a message locally (Maildir "F"), add one, sync up
        target = next(f for f in files if b"Subject: no from" in f.read_bytes())
        target.rename(target.parent.parent / "cur" / (target.name.split(":2,")[0] + ":2,F"))
        (inbox / "new" / "1700000000.local.host").write_bytes(
            b"Subject: from mbsync\n\nuploaded\n")
        second = mbsync(config)
        assert second.returncode == 0, second.stderr
        c = cote_client(store, "cotemisc")
        c.command("SELECT INBOX")
        got = c.command('SEARCH FLAGGED SUBJECT "no from"')
        assert got.startswith(b"* SEARCH 4\r\n"), got
        assert c.command("SEARCH SUBJECT mbsync").startswith(b"* SEARCH 7\r\n")
        c.command("LOGOUT")
        c.close()
    finally:
        remove_dir(local)

