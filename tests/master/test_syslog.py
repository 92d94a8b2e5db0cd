"""log_path = syslog: cote's lines reach syslog with Dovecot's ident, facility and shapes.

A datagram socket stands in for syslogd at /dev/log. On a machine without a syslog daemon
(CI, this one) it is created for the test and removed afterwards; where a daemon owns
/dev/log, cote runs in a private mount namespace with the test's socket bound over it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cote import COTE, CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir

DEV_LOG = Path("/dev/log")
LOCAL3_INFO = 19 * 8 + 6  # facility local3, priority info


@pytest.fixture
def syslog_socket() -> Iterator[tuple[socket.socket, Path | None]]:
    """The socket syslog lines arrive on, and the path to bind over /dev/log (None: the
    socket is /dev/log itself)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    work = server_dir("syslog")
    if DEV_LOG.exists():
        path: Path | None = work / "log"
        sock.bind(str(path))
    else:
        path = None
        sock.bind(str(DEV_LOG))
        os.chmod(DEV_LOG, 0o666)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()
        if path is None:
            DEV_LOG.unlink(missing_ok=True)
        remove_dir(work)


def test_lines_go_to_syslog_with_dovecots_shape(
        syslog_socket: tuple[socket.socket, Path | None]) -> None:
    sock, bind_over = syslog_socket
    users = DovecotOracle(users={"u": "p"})
    users.write_config()
    cote = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                      passwd_file=users.dir / "users", protocols="pop3",
                      extra_conf="log_path = syslog\nsyslog_facility = local3\n"
                                 "auth_failure_delay = 0\n")
    try:
        if bind_over is not None:
            # Run the master with the test socket bound over /dev/log, in its own namespace.
            command = (f"mount --bind {bind_over} /dev/log && exec {COTE} -F -c "
                       f"{cote.config_path}")
            cote.process = subprocess.Popen(["unshare", "-m", "sh", "-c", command])
            time.sleep(2)
        else:
            cote.start()
        s = socket.create_connection(("127.0.0.1", cote.ports["pop3"]), timeout=20)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"USER u\r\nPASS wrong\r\nQUIT\r\n")
        for _ in range(3):
            f.readline()
        f.close()
        s.close()
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("auth failed" in x for x in lines):
            try:
                lines.append(sock.recv(65536).decode())
            except TimeoutError:
                continue
        start = [x for x in lines if "starting up for pop3" in x]
        failed = [x for x in lines if "auth failed" in x]
        assert start and failed, lines
        # "<PRI>Mon DD HH:MM:SS dovecot[PID]: pop3-login: Disconnected: …": Info lines carry
        # no level word, as with Dovecot; the ident is dovecot unless instance_name says else.
        assert failed[0].startswith(f"<{LOCAL3_INFO}>")
        assert " dovecot[" in failed[0]
        assert "]: pop3-login: Disconnected: Aborted login by logging out (auth failed, " \
            "1 attempts in 0 secs): user=<u>, method=PLAIN" in failed[0]
    finally:
        cote.cleanup()
        users.cleanup()
