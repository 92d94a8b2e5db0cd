"""offlineimap (Debian's offlineimap3) against the whole cote stack, plaintext on 127.0.0.1:
a 200-message account in 3 folders, APPENDed over IMAP, comes down to a local Maildir byte
for byte (in offlineimap's LF line ends); then a flag set and a message deleted locally go
up and are seen over IMAP."""

from __future__ import annotations

import imaplib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir

USER, PASSWORD = "offline", "secret"
FOLDERS = {"INBOX": 80, "Work": 70, "Lists": 50}
"""200 messages in 3 folders."""
DATE = '"02-Jan-2023 10:00:00 +0000"'


def message(folder: str, n: int) -> bytes:
    """Plain, 8-bit and multipart messages, each with a Message-ID naming it."""
    head = (f"From: sender{n}@example.org\r\nTo: {USER}@example.org\r\n"
            f"Subject: {folder} message {n}\r\nMessage-ID: <{folder}.{n}@example.org>\r\n"
            f"Date: Mon, 2 Jan 2023 10:{n % 60:02d}:00 +0000\r\n").encode()
    if n % 3 == 0:
        return head + b"\r\n" + b"".join(b"line %d of %d\r\n" % (i, n) for i in range(n * 5))
    if n % 3 == 1:
        return (head + b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 %d\r\n" % n)
    return (head + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\npart one %d\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\nAAECAwQFBgc=\r\n--b--\r\n" % n)


def imap(cote: CoteServer) -> imaplib.IMAP4:
    conn = imaplib.IMAP4("127.0.0.1", cote.ports["imap"], timeout=60)
    conn.login(USER, PASSWORD)
    return conn


@pytest.fixture(scope="module")
def cote() -> Iterator[CoteServer]:
    users = DovecotOracle(users={USER: PASSWORD})
    users.write_config()
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="imap")
    try:
        yield server.start()
    finally:
        server.cleanup()
        remove_dir(users.dir)


def offlineimap(config: Path) -> None:
    done = subprocess.run(["offlineimap", "-c", str(config), "-o", "-u", "quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stdout + done.stderr


def local_files(root: Path, folder: str) -> dict[str, Path]:
    """The local Maildir's messages of ``folder`` by Message-ID."""
    out: dict[str, Path] = {}
    for path in [*(root / folder / "cur").iterdir(), *(root / folder / "new").iterdir()]:
        m = re.search(rb"(?mi)^Message-ID: <([^>]+)>", path.read_bytes())
        assert m is not None, path
        out[m.group(1).decode()] = path
    return out


def test_offlineimap_syncs_200_messages_down_and_changes_up(cote: CoteServer) -> None:
    assert shutil.which("offlineimap"), "offlineimap3 missing (Debian; scripts/test installs it)"
    appended: dict[str, dict[str, bytes]] = {}
    conn = imap(cote)
    for folder, count in FOLDERS.items():
        if folder != "INBOX":
            assert conn.create(folder)[0] == "OK"
        appended[folder] = {}
        for n in range(count):
            body = message(folder, n)
            flags = "(\\Seen)" if n % 2 else "()"
            assert conn.append(folder, flags, DATE, body)[0] == "OK"
            appended[folder][f"{folder}.{n}@example.org"] = body
    conn.logout()

    local = server_dir("offlineimap")
    try:
        (local / "mail").mkdir()
        config = local / "offlineimaprc"
        config.write_text(f"""\
[general]
accounts = cote
metadata = {local}/meta

[Account cote]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}/mail

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {cote.ports['imap']}
remoteuser = {USER}
remotepass = {PASSWORD}
ssl = no
starttls = no
""")
        offlineimap(config)
        assert {p.name for p in (local / "mail").iterdir()} == set(FOLDERS)
        for folder, sent in appended.items():
            got = local_files(local / "mail", folder)
            assert sorted(got) == sorted(sent), folder
            for mid, body in sent.items():
                # offlineimap stores with LF line ends (its getmessage: "all CRLFs will
                # be transformed"); nothing else may differ
                assert got[mid].read_bytes() == body.replace(b"\r\n", b"\n"), mid
            seen = [mid for mid, p in got.items() if re.search(r":2,[A-Z]*S", p.name)]
            assert len(seen) == FOLDERS[folder] // 2, folder  # \Seen came down as Maildir S

        # Up: flag Work message 10, delete Work message 11.
        work = local_files(local / "mail", "Work")
        flagged = work["Work.10@example.org"]
        base, _, info = flagged.name.partition(":2,")
        flagged.rename(flagged.parent.parent / "cur" / f"{base}:2,{''.join(sorted(info + 'F'))}")
        work["Work.11@example.org"].unlink()
        offlineimap(config)

        conn = imap(cote)
        assert conn.select("Work")[0] == "OK"
        _, [found] = conn.search(None, "HEADER", "Message-ID", "<Work.10@", "FLAGGED")
        assert len(found.split()) == 1
        _, [gone] = conn.search(None, "HEADER", "Message-ID", "<Work.11@")
        assert gone == b""
        _, [count] = conn.status("Work", "(MESSAGES)")
        assert count.endswith(b"(MESSAGES %d)" % (FOLDERS["Work"] - 1)), count
        _, [flags] = conn.search(None, "FLAGGED")
        assert flags == found  # only the one flagged locally
        conn.logout()
        assert "Traceback" not in cote.log_text()
    finally:
        remove_dir(local)
