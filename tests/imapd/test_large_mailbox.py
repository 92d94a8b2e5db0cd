"""A 100,000-message Maildir: SELECT, FETCH of every body and SEARCH, with the mail process's
peak memory bounded (the FETCH response, ~220 MB here, is streamed, never built whole).

The messages are hard links of a 2 KB file under 100,000 Maildir names, so the store
costs almost no disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imapd.conftest import Client, cote_process
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

COUNT = 100_000
BODY = b"Subject: bulk\r\nFrom: bulk@example.com\r\n\r\n" + b"".join(b"line %03d of the bulk message body, padded to a fixed width.....\r\n" % i
             for i in range(30))
PEAK_LIMIT_KB = 200_000


@pytest.fixture(scope="module")
def big_maildir() -> Iterator[Path]:
    root = server_dir("imapd-big")
    maildir = root / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    size = len(BODY)
    template = root / "template"
    for i in range(COUNT):
        if i % 50_000 == 0:  # a file has at most 65,000 links on ext4
            template = root / f"template{i}"
            template.write_bytes(BODY)
        os.link(template, maildir / "cur" / f"{1600000000 + i}.M{i}P1.bulk,S={size}:2,S")
    vmail = mail_user()
    chown_tree(root, vmail.pw_uid, vmail.pw_gid)
    yield maildir
    remove_dir(root)


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert m
    return int(m.group(1))


def test_fetch_of_every_body_streams(big_maildir: Path) -> None:
    sock, proc = cote_process(big_maildir, "bulkuser")
    sock.settimeout(300)
    c = Client(sock, proc)
    assert c.line().startswith(b"* PREAUTH ")
    selected = c.command("SELECT INBOX", "s")
    assert b"* %d EXISTS\r\n" % COUNT in selected, selected
    sock.sendall(b"f FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])\r\n")
    total = 0
    count = 0
    while True:
        line = c.file.readline()
        if line.startswith(b"f "):
            assert line.startswith(b"f OK Fetch completed"), line
            break
        m = re.match(rb"\* (\d+) FETCH \(UID (\d+) RFC822.SIZE (\d+) BODY\[\] \{(\d+)\}\r\n",
                     line)
        assert m, line
        size = int(m.group(4))
        body = c.file.read(size)
        assert body == BODY and int(m.group(3)) == size
        assert c.file.readline() == b")\r\n"
        count += 1
        total += len(line) + size
    assert count == COUNT and total > COUNT * len(BODY)
    assert c.command("SEARCH UID 99990:*", "q").startswith(
        b"* SEARCH " + b" ".join(b"%d" % n for n in range(99990, COUNT + 1)))
    peak = peak_rss_kb(proc.pid)
    assert peak < PEAK_LIMIT_KB, f"peak RSS {peak} kB for a {total // 1_000_000} MB response"
    c.command("LOGOUT", "z")
    sock.close()
    assert proc.wait(30) == 0


@pytest.fixture
def empty_maildir() -> Iterator[Path]:
    root = server_dir("imapd-append")
    vmail = mail_user()
    chown_tree(root, vmail.pw_uid, vmail.pw_gid)
    yield root / "Maildir"
    remove_dir(root)


def test_append_of_a_large_message_streams(empty_maildir: Path) -> None:
    """A 64 MB APPEND goes to disk as it arrives; FETCH sends it back byte for byte."""
    sock, proc = cote_process(empty_maildir, "bulkuser")
    sock.settimeout(120)
    c = Client(sock, proc)
    c.line()
    line = b"%07d: the quick brown fox jumps over the lazy dog, again and again......\r\n"
    chunk = b"".join(line % i for i in range(10_000))  # about 800 KB
    count = 80
    size = len(b"Subject: big\r\n\r\n") + count * len(chunk)
    sock.sendall(b"a APPEND INBOX {%d}\r\n" % size)
    assert c.line() == b"+ OK\r\n"
    sock.sendall(b"Subject: big\r\n\r\n")
    for _ in range(count):
        sock.sendall(chunk)
    sock.sendall(b"\r\n")
    assert c.until("a").startswith(b"a OK [APPENDUID ")
    c.command("SELECT INBOX", "s")
    offset = 50 * len(chunk)
    sock.sendall(b"f FETCH 1 (RFC822.SIZE BODY.PEEK[TEXT]<%d.%d>)\r\n" % (offset, len(chunk)))
    head = c.file.readline()
    assert head == b"* 1 FETCH (RFC822.SIZE %d BODY[TEXT]<%d> {%d}\r\n" % (
        size, offset, len(chunk)), head
    assert c.file.read(len(chunk)) == chunk
    assert c.file.readline() == b")\r\n"
    assert c.until("f").startswith(b"f OK Fetch completed")
    peak = peak_rss_kb(proc.pid)
    assert peak < PEAK_LIMIT_KB // 2, f"peak RSS {peak} kB for a {size // 1_000_000} MB message"
    c.command("LOGOUT", "z")
    c.close()
