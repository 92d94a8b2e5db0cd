"""The quota-warning script path end to end, as the seeds' conf.d/90-quota.conf sets it up: a
cote master with LMTP, the quota plugin and a ``script`` service ``quota-warning`` whose
program injects a warning mail with ``cote-lda -d $USER -o "plugin/quota=…:noenforcing"``.
An LMTP delivery crossing 95 % runs the script once; its mail is delivered although the user
is then over quota; later deliveries neither run it again nor get past the quota."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.test_lmtp_delivery import converse
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import MAIL_USER, mail_user

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """\
#!/bin/sh
PERCENT=$1
USER=$2
echo "$PERCENT $USER" >> {runs}
cat << EOF | {lda} -c {config} -d $USER -o "plugin/quota=maildir:User quota:noenforcing"
From: postmaster@example.com
Subject: quota warning
Message-ID: <quota-warning-$PERCENT@example.com>

Your mailbox is now $PERCENT% full.
EOF
"""
CONF = """\
mail_plugins = $mail_plugins quota
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage=10k
  quota_warning = storage=95%% quota-warning 95 %u
}}
service quota-warning {{
  executable = script {script}
  user = {user}
  unix_listener quota-warning {{
    user = {user}
  }}
}}
"""


def deliver(port: int, size: int, tag: str) -> bytes:
    body = f"Subject: {tag}\r\nMessage-ID: <{tag}@x>\r\n\r\n".encode() + b"x" * size + b"\r\n"
    lines = [b"LHLO c\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<user1>\r\nDATA\r\n",
             body + b".\r\n", b"QUIT\r\n"]
    return converse(socket.create_connection(("127.0.0.1", port)), lines)


def inbox_ids(maildir: Path) -> list[str]:
    ids = []
    for sub in ("new", "cur"):
        for f in (maildir / sub).iterdir():
            m = re.search(rb"^Message-ID: <([^>]+)>", f.read_bytes(), re.MULTILINE)
            ids.append(m.group(1).decode() if m else "?")
    return sorted(ids)


def test_warning_script_runs_once_and_its_mail_is_delivered_over_quota() -> None:
    mail_user()
    with DovecotOracle(users={"user1": "x"}) as dc:
        runs = dc.dir / "warning-runs"
        script = dc.dir / "quota-warning.sh"
        cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u",
                          passwd_file=dc.dir / "users", protocols="lmtp")
        script.write_text(SCRIPT.format(runs=runs, lda=REPO / ".venv/bin/cote-lda",
                                        config=cote.config_path))
        script.chmod(0o755)
        runs.touch()
        runs.chmod(0o666)
        with cote.config_path.open("a") as f:
            f.write(CONF.format(script=script, user=MAIL_USER))
        try:
            cote.start()
            port = cote.ports["lmtp"]
            assert b"250 2.0.0 <user1>" in deliver(port, 8000, "first")  # ~80 %
            assert runs.read_text() == ""
            assert b"250 2.0.0 <user1>" in deliver(port, 1700, "second")  # crosses 95 %
            deadline = time.monotonic() + 10
            maildir = dc.user_maildir("user1")
            while "quota-warning-95@example.com" not in inbox_ids(maildir):
                assert time.monotonic() < deadline, (inbox_ids(maildir), cote.log_text())
                time.sleep(0.1)
            third = deliver(port, 3000, "third")
            time.sleep(0.5)
            assert b"552 5.2.2 <user1> Quota exceeded (mailbox for user is full)" in third
            assert runs.read_text() == "95 user1\n"
            assert inbox_ids(maildir) == ["first@x", "quota-warning-95@example.com",
                                          "second@x"]
            # The same mail without the script's noenforcing override is refused now.
            plain = subprocess.run([REPO / ".venv/bin/cote-lda", "-c", str(cote.config_path),
                                    "-d", "user1", "-e"], input=b"Subject: w\n\nagain\n",
                                   capture_output=True, timeout=30)
            assert (plain.returncode, plain.stderr) == (
                77, b"Quota exceeded (mailbox for user is full)\n"), plain
        finally:
            cote.cleanup()
