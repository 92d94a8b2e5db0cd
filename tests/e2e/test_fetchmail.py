"""fetchmail, a real POP3 client, retrieves from cote: keep leaves the mail, no-keep deletes it."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir

MESSAGES = [b"Subject: one\r\nMessage-ID: <f1@x>\r\n\r\nfirst\r\n",
            b"Subject: two\r\nMessage-ID: <f2@x>\r\n\r\nsecond\r\n.dot line\r\n"]


def run_fetchmail(port: int, keep: bool) -> list[bytes]:
    work = server_dir("fetchmail")
    try:
        rc = work / "fetchmailrc"
        rc.write_text(f'poll 127.0.0.1 protocol POP3 port {port} auth password\n'
                      f'  user "fetcher" password "secret" is root here\n'
                      f'  {"keep" if keep else "nokeep"} mda "/bin/sh -c \'cat > '
                      f'{work}/msg.$$$$\'"\n')
        rc.chmod(0o600)
        env = dict(os.environ, HOME=str(work))
        result = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "-v", "--sslproto", "",
                                 "--idfile", str(work / "fetchids")],
                                capture_output=True, env=env, timeout=60)
        assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: no mail
        return sorted(p.read_bytes() for p in work.glob("msg.*"))
    finally:
        remove_dir(work)


def count(dc: DovecotOracle) -> int:
    imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
    imap.login("fetcher", "secret")
    _, data = imap.select("INBOX")
    imap.logout()
    return int(data[0])


def test_fetchmail_keep_and_nokeep() -> None:
    assert shutil.which("fetchmail"), "fetchmail missing (Debian package; scripts/test installs it)"
    dc = DovecotOracle(users={"fetcher": "secret"}).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="pop3")
    try:
        imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        imap.login("fetcher", "secret")
        for msg in MESSAGES:
            imap.append("INBOX", "", None, msg)
        imap.logout()
        cote.start()
        kept = run_fetchmail(cote.ports["pop3"], keep=True)
        assert len(kept) == 2 and all(b"Subject: " in m for m in kept)
        # Our dot-stuffing of ".dot line" came back unstuffed (the MDA gets LF line ends).
        assert b"second\n.dot line\n" in kept[1].replace(b"\r\n", b"\n")
        assert count(dc) == 2
        fetched = run_fetchmail(cote.ports["pop3"], keep=False)
        assert len(fetched) == 2
        assert count(dc) == 0
    finally:
        cote.cleanup()
        dc.cleanup()
