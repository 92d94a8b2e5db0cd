"""``service_count != 1`` on imap and pop3 (cote's default 100; Dovecot's performance
tuning page suggests the same): a process serves clients one after the other, each as the
user, and exits after ``service_count`` of them. A process that became one uid passes a user
of another uid on to another process (Dovecot's fails that login)."""

from __future__ import annotations

import imaplib
import os
import poplib
import pwd
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imapd.conftest import Client
from tests.imapd.test_hibernate import HIBERNATE_CONF, idle_until_hibernated, read_for
from tests.support.cote import CoteServer
from tests.support.env import mail_user, remove_dir, server_dir

USERS = {"u1": "p1", "u2": "p2"}
OTHER_UID_USER = ("u3", "p3")  # uid nobody: not the uid of u1 and u2
SERVICE_COUNT = 3
# mail_log_prefix's default: "imap(u1)<1234><session>: "
PID_OF_SESSION = re.compile(
    r"(imap|pop3)\((\w+)\)<(\d+)><[^>]*>: Info: Disconnected: (?:Logged out|Hibernating)")


def write_users(root: Path) -> Path:
    vmail = mail_user()
    nobody = pwd.getpwnam("nobody")
    lines = [f"{u}:{{PLAIN}}{p}:{vmail.pw_uid}:{vmail.pw_gid}::{root}/home/{u}::"
             for u, p in USERS.items()]
    u3, p3 = OTHER_UID_USER
    lines.append(f"{u3}:{{PLAIN}}{p3}:{nobody.pw_uid}:{nobody.pw_gid}::{root}/home/{u3}::")
    path = root / "users"
    path.write_text("\n".join(lines) + "\n")
    for u in [*USERS, u3]:
        uid, gid = (nobody.pw_uid, nobody.pw_gid) if u == u3 else (vmail.pw_uid, vmail.pw_gid)
        for sub in (root / "mail" / u, root / "home" / u):
            sub.mkdir(parents=True)
            os.chown(sub, uid, gid)
    return path


def start(root: Path, service_conf: str) -> CoteServer:
    return CoteServer(mail_location=f"maildir:{root}/mail/%u", passwd_file=write_users(root),
                      protocols="imap pop3", extra_conf=f"""
disable_plaintext_auth = no
auth_failure_delay = 0
first_valid_uid = {mail_user().pw_uid}
{service_conf}
""").start()


@pytest.fixture(scope="module")
def reusing() -> Iterator[CoteServer]:
    root = server_dir("reuse")
    root.chmod(0o755)
    server = None
    try:
        server = start(root, f"""
service imap {{
  service_count = {SERVICE_COUNT}
}}
service pop3 {{
  service_count = 0
}}
""")
        yield server
    finally:
        if server is not None:
            server.cleanup()
        remove_dir(root)


def served_by(server: CoteServer, protocol: str, count: int) -> list[tuple[str, int]]:
    """(user, pid) of the last ``count`` sessions of ``protocol`` that logged out (or went
    to imap-hibernate)."""
    deadline = time.monotonic() + 10
    while True:
        found = [(m.group(2), int(m.group(3))) for m in PID_OF_SESSION.finditer(server.log_text())
                 if m.group(1) == protocol]
        if len(found) >= count or time.monotonic() > deadline:
            return found[-count:]
        time.sleep(0.05)


def imap_session(server: CoteServer, user: str, password: str) -> list[bytes]:
    """Log in, append a message naming the user, read every Subject back, log out."""
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    try:
        imap.login(user, password)
        imap.append("INBOX", None, None, f"Subject: for {user}\r\n\r\nbody\r\n".encode())
        imap.select("INBOX")
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        return [part[1].strip() for part in data if isinstance(part, tuple)]
    finally:
        imap.logout()


def test_imap_processes_serve_several_sessions_each_as_its_user(reusing: CoteServer) -> None:
    sessions = 4 * SERVICE_COUNT
    seen: dict[str, int] = {u: 0 for u in USERS}
    for i in range(sessions):
        user = list(USERS)[i % len(USERS)]
        seen[user] += 1
        subjects = imap_session(reusing, user, USERS[user])
        # each user sees exactly their own mail, however the processes were shared
        assert subjects == [f"Subject: for {user}".encode()] * seen[user]
    served = served_by(reusing, "imap", sessions)
    assert len(served) == sessions
    per_pid: dict[int, int] = {}
    for _user, pid in served:
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert len(per_pid) < sessions, "no process served a second session"
    assert max(per_pid.values()) <= SERVICE_COUNT, per_pid
    for pid in per_pid:
        assert not [f for f in open_files(pid) if "cote.index" in f], pid


def test_pop3_processes_serve_several_sessions(reusing: CoteServer) -> None:
    for _ in range(6):
        pop = poplib.POP3("127.0.0.1", reusing.ports["pop3"])
        pop.user("u1")
        pop.pass_("p1")
        count, _size = pop.stat()
        assert count >= 0
        pop.quit()
    served = served_by(reusing, "pop3", 6)
    assert len(served) == 6
    assert len({pid for _u, pid in served}) < 6
    # between sessions a process holds nothing of the last user's: no index left open
    for pid in {pid for _u, pid in served}:
        assert not [f for f in open_files(pid) if "cote.index" in f], pid


def open_files(pid: int) -> list[str]:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return []  # the process is gone
    out = []
    for name in names:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except FileNotFoundError:
            pass
    return out


def test_a_user_of_another_uid_goes_to_another_process() -> None:
    """The process that became u1 (vmail) cannot become u3 (nobody): it sends the hand-off
    back to the login process before the login is confirmed, and exits; the login process
    hands the client to the service again, and a fresh process serves u3."""
    root = server_dir("reuse-uid")
    root.chmod(0o755)
    server = None
    try:
        # one imap process at a time: u3's hand-off is bound to meet u1's process first
        server = start(root, "service imap {\n  service_count = 0\n  process_limit = 1\n}\n")
        imap_session(server, "u1", USERS["u1"])
        ((_user, first_pid),) = served_by(server, "imap", 1)
        u3, p3 = OTHER_UID_USER
        assert imap_session(server, u3, p3) == [b"Subject: for u3"]
        u1_session, u3_session = served_by(server, "imap", 2)
        assert u1_session == ("u1", first_pid)
        assert u3_session[0] == u3 and u3_session[1] != first_pid
        assert not os.path.exists(f"/proc/{first_pid}"), "u1's process did not exit"
        log = server.log_text()
        assert "Error" not in log and "Traceback" not in log, log
    finally:
        if server is not None:
            server.cleanup()
        remove_dir(root)


def test_a_reused_process_takes_a_hibernated_client_back() -> None:
    """A process whose client went to imap-hibernate exits (no idle process per IDLE
    client). The unhibernation lands on a process that is already the user (no longer root):
    it asks auth-master on the connection it kept, and the client hears of the new mail."""
    root = server_dir("reuse-hib")
    root.chmod(0o755)
    server = None
    try:
        server = start(root, f"""{HIBERNATE_CONF}
service imap {{
  service_count = 0
  process_limit = 1
}}
""")
        idler = Client(socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=20))
        idler.line()
        assert b" OK " in idler.command("LOGIN u1 p1")
        idle_until_hibernated(server, idler, "u1")
        ((_user, first_pid),) = served_by(server, "imap", 1)  # it went to imap-hibernate
        # (process_limit = 1: the other session can only start once that process is gone)
        assert imap_session(server, "u1", "p1") == [b"Subject: for u1"]
        assert not os.path.exists(f"/proc/{first_pid}")
        woke = read_for(idler, 5)
        assert b"* 1 EXISTS" in woke, woke
        idler.sock.sendall(b"DONE\r\n")
        assert b" OK " in idler.until("i")
        assert b"* 1 FETCH" in idler.command("FETCH 1 (FLAGS)")
        idler.command("LOGOUT")
        log = server.log_text()
        assert "Couldn't unhibernate" not in log and "Traceback" not in log, log
        # the other session's process, now u1's, took the idler back from imap-hibernate
        hibernated, other, resumed = served_by(server, "imap", 3)
        assert hibernated == ("u1", first_pid)
        assert other == resumed and other[1] != first_pid
    finally:
        if server is not None:
            server.cleanup()
        remove_dir(root)
