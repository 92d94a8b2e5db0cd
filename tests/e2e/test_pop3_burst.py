"""A burst of short POP3 sessions: every one succeeds and no service is throttled.

Each session is a fresh login process and a fresh pop3 process that exits right after its
client; the master must never take such a quick, healthy exit for a failed start.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


def session(port: int) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"USER u\r\nPASS p\r\nSTAT\r\nQUIT\r\n")
    replies = b"".join(f.readline() for _ in range(4))
    f.close()
    sock.close()
    return replies


def test_burst_of_sessions_is_served_without_throttling() -> None:
    users = DovecotOracle(users={"u": "p"})
    users.write_config()
    cote = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                      passwd_file=users.dir / "users", protocols="pop3")
    try:
        cote.start()
        results: list[bytes] = []

        def worker() -> None:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                results.append(session(cote.ports["pop3"]))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) >= 8
        assert all(r == b"+OK\r\n+OK Logged in.\r\n+OK 0 0\r\n+OK Logging out.\r\n"
                   for r in results), set(results)
        log = cote.log_text()
        assert "startup failed" not in log and "throttling" not in log, log[-3000:]
    finally:
        cote.cleanup()
        users.cleanup()
