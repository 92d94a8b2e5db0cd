"""A 50 MB RETR through the full stack (pop3-login, hand-off, the pop3 mail process) never
holds the message whole: the mail process's peak RSS (VmHWM) grows far less than the message.

A memory property, not a timing one. The message has LF line ends and lines starting with a
dot, so every chunk goes through the CRLF conversion and dot-stuffing; the client checks the
answer byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import socket

from tests.support.cote import CoteServer
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

USER, PASSWORD = "bigone", "secret"
SIZE = 50 * 1024 * 1024
MAX_GROWTH = 40 * 1024 * 1024


def big_message() -> bytes:
    line = b".a line that POP3 must dot-stuff, with LF line ends only, padded to 76 ch\n"
    plain = b"plain line of text in the body, LF line ends as well, padded to 76 chars.\n"
    block = (line + plain * 9) * 100
    return b"Subject: fifty megabytes\n\n" + block * (SIZE // len(block) + 1)


def pop3_process(user: str) -> int:
    """The pop3 mail process serving ``user`` (its title carries the user name)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if title.startswith(b"cote/pop3 ") and user.encode() in title:
            return int(name)
    raise AssertionError(f"no pop3 process for {user}")


def vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def rchar(pid: int) -> int:
    """Bytes the process read (any fd): proves it is the process that served the RETR."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


def test_50mb_retr_streams() -> None:
    root = server_dir("bigretr")
    vmail = mail_user()
    maildir = root / "mail" / USER
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    msg = big_message()
    (maildir / "new" / "1700000000.M1P1.host").write_bytes(msg)
    chown_tree(root / "mail", vmail.pw_uid, vmail.pw_gid)
    passwd = root / "users"
    passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{vmail.pw_uid}:{vmail.pw_gid}::"
                      f"{root}/home::\n")
    wire = msg.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
    want = hashlib.sha256(b"+OK %d octets\r\n" % (len(msg) + msg.count(b"\n")) + wire +
                          b".\r\n").hexdigest()
    size_of_wire = len(wire)
    del msg, wire  # the test process keeps no copy either while it reads
    cote = CoteServer(mail_location=f"maildir:{root}/mail/%u", passwd_file=passwd,
                      protocols="pop3").start()
    try:
        sock = socket.create_connection(("127.0.0.1", cote.ports["pop3"]), timeout=60)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        assert f.readline().startswith(b"+OK")
        assert f.readline() == b"+OK Logged in.\r\n"
        sock.sendall(b"STAT\r\n")
        assert f.readline().startswith(b"+OK 1 ")
        pid = pop3_process(USER)
        before, read_before = vm_hwm(pid), rchar(pid)
        sock.sendall(b"RETR 1\r\n")
        digest = hashlib.sha256()
        tail = b""
        received = 0
        while not tail.endswith(b"\r\n.\r\n"):
            chunk = f.read1(1 << 16)
            assert chunk, "connection closed during RETR"
            digest.update(chunk)
            received += len(chunk)
            tail = (tail + chunk)[-5:]
        after, read_after = vm_hwm(pid), rchar(pid)
        assert read_after - read_before >= SIZE
        assert digest.hexdigest() == want
        assert received > size_of_wire
        growth = after - before
        print(f"pop3 process VmHWM {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
              f"(+{growth / 2**20:.1f} MiB) for a {SIZE / 2**20:.0f} MiB RETR")
        assert growth < MAX_GROWTH, growth
        sock.sendall(b"QUIT\r\n")
        assert f.readline() == b"+OK Logging out.\r\n"
        sock.close()
    finally:
        cote.stop()
        cote.cleanup()
        remove_dir(root)
