"""200 IDLE clients of one mail uid all hibernate, and each costs imap-hibernate little.

One virtual-mail uid is the common setup (and the bench's): with an inotify instance per
hibernated client, ``fs.inotify.max_user_instances`` (128) stopped hibernation at ~128
sessions. imap-hibernate's RSS is a memory property, measured here from /proc, not a
timing."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.cote import CoteServer
from tests.support.env import mail_user, remove_dir, server_dir

CLIENTS = 200
HIBERNATE_CONF = f"""\
imap_hibernate_timeout = 1s
service imap {{
  unix_listener imap-master {{
    user = $default_internal_user
  }}
  process_limit = {CLIENTS + 50}
}}
default_process_limit = {CLIENTS + 50}
default_client_limit = {2 * CLIENTS + 100}
"""


@pytest.fixture(scope="module")
def cote() -> Iterator[CoteServer]:
    users_dir = server_dir("hib-many")
    vmail = mail_user()
    (users_dir / "mail").mkdir()
    os.chown(users_dir / "mail", vmail.pw_uid, vmail.pw_gid)
    (users_dir / "users").write_text("".join(
        f"m{n:03d}:{{PLAIN}}pw:{vmail.pw_uid}:{vmail.pw_gid}::{users_dir}/home/m{n:03d}::\n"
        for n in range(CLIENTS)))
    server = CoteServer(mail_location=f"maildir:{users_dir}/mail/%u",
                        passwd_file=users_dir / "users", protocols="imap",
                        extra_conf=HIBERNATE_CONF)
    try:
        yield server.start()
    finally:
        server.cleanup()
        remove_dir(users_dir)


def idle(port: int, n: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    for line, tag in ((f"a LOGIN m{n:03d} pw", b"a "), ("b SELECT INBOX", b"b ")):
        s.sendall(line.encode() + b"\r\n")
        while not (reply := f.readline()).startswith(tag):
            assert reply.startswith(b"* "), reply
        assert b" OK " in reply, reply
    s.sendall(b"c IDLE\r\n")
    assert f.readline() == b"+ idling\r\n"
    return s


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))


def pids(cote: CoteServer, pattern: str) -> list[int]:
    """The server's children whose title matches (other modules' servers run beside it)."""
    assert cote.process is not None
    out = subprocess.run(["pgrep", "-P", str(cote.process.pid), "-f", pattern],
                         capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_200_clients_of_one_uid_hibernate_under_100_kb_each(cote: CoteServer) -> None:
    first = idle(cote.ports["imap"], 0)  # (a failure shows the server's log below)  # starts imap-hibernate: its RSS before the rest
    deadline = time.monotonic() + 30
    while not cote.wait_for_log("Hibernating", 0.2) and time.monotonic() < deadline:
        pass
    (hib,) = pids(cote, "/imap-hibernate")
    before = rss_kib(hib)
    socks: list[socket.socket] = [first]
    lock = threading.Lock()

    def batch(start: int) -> None:
        for n in range(start, min(start + 5, CLIENTS)):
            s = idle(cote.ports["imap"], n)
            with lock:
                socks.append(s)

    try:
        for start in range(1, CLIENTS, 20):  # 20 at a time: a few dozen imap processes
            threads = [threading.Thread(target=batch, args=(s,))
                       for s in range(start, min(start + 20, CLIENTS), 5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(cote.wait_for_log("Disconnected: Hibernating", 0)) >= CLIENTS:
                break
            time.sleep(0.5)
        assert len(socks) == CLIENTS
        hibernated = cote.wait_for_log("Disconnected: Hibernating", 0)
        assert len(hibernated) == CLIENTS, f"{len(hibernated)} of {CLIENTS} hibernated"
        assert not pids(cote, "/imap \\[m"), "imap processes left"
        grew = rss_kib(hib) - before
        print(f"imap-hibernate RSS grew {grew} KiB for {CLIENTS - 1} clients "
              f"({grew / (CLIENTS - 1):.1f} KiB each)")
        assert grew / (CLIENTS - 1) < 100
        # and they are still served: one client's DONE wakes it
        socks[-1].sendall(b"DONE\r\n")
        socks[-1].settimeout(30)
        assert socks[-1].recv(4096).endswith(b"c OK Idle completed.\r\n")
    finally:
        for s in socks:
            s.close()
    assert "Traceback" not in cote.log_text()
