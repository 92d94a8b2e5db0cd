"""fail2ban's stock ``dovecot`` filter bans from cote's log exactly as from Dovecot's.

The same failed logins (wrong password, unknown user, over POP3) go to Dovecot and to cote;
Debian's ``fail2ban-regex`` then runs the shipped filter over each server's log file. Both
must match the same number of lines, and at least one per failed login.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

FILTER = Path("/etc/fail2ban/filter.d/dovecot.conf")
FAILURES = [("victim", "wrong1"), ("victim", "wrong2"), ("ghost", "x")]


def fail_logins(port: int) -> None:
    for user, password in FAILURES:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(f"USER {user}\r\nPASS {password}\r\n".encode())
        f.readline()
        assert f.readline().startswith(b"-ERR [AUTH]")
        sock.sendall(b"QUIT\r\n")
        f.readline()
        f.close()
        sock.close()


def matched(log: Path) -> int:
    out = subprocess.run(["fail2ban-regex", str(log), str(FILTER)], capture_output=True,
                         text=True, check=True).stdout
    found = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched", out, re.M)
    assert found, out
    return int(found.group(1))


def wait_for(path: Path, needle: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while path.read_text().count(needle) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_stock_filter_matches_cote_like_dovecot() -> None:
    assert shutil.which("fail2ban-regex") and FILTER.exists(), \
        "fail2ban is missing (Debian package fail2ban; scripts/test installs it)"
    dc = DovecotOracle(users={"victim": "right"}, extra_conf="auth_failure_delay = 0\n").start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="pop3", extra_conf="auth_failure_delay = 0\n")
    try:
        cote.start()
        fail_logins(dc.ports["pop3"])
        fail_logins(cote.ports["pop3"])
        wait_for(dc.log_path, "auth failed", len(FAILURES))
        wait_for(cote.log_path, "auth failed", len(FAILURES))
        theirs, ours = matched(dc.log_path), matched(cote.log_path)
        assert theirs >= len(FAILURES)
        assert ours == theirs
    finally:
        cote.cleanup()
        dc.cleanup()
