"""getmail6, a real POP3 client, retrieves from cote: keep mode leaves the mail (and a second
run fetches nothing new, by UIDL), delete mode empties the maildrop; every message arrives
byte for byte (getmail stores LF line ends and, with the options below, adds only its
Return-Path line)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.cote import CoteServer
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

USER, PASSWORD = "getter", "secret"
MESSAGES = [
    b"Subject: one\r\nMessage-ID: <g1@x>\r\n\r\nfirst\r\n",
    b"Subject: two\r\nMessage-ID: <g2@x>\r\n\r\nsecond\r\n.dot line\r\n..two dots\r\n",
    b"Subject: three\nMessage-ID: <g3@x>\n\nLF only\nno final newline",
    b"Subject: big\r\n\r\n" + b"".join(b"line %05d of a longer one\r\n" % i for i in range(4000)),
]


def expected(msg: bytes) -> bytes:
    """What a Maildir client stores: LF line ends, a final newline."""
    text = msg.replace(b"\r\n", b"\n")
    return text if text.endswith(b"\n") else text + b"\n"


def run_getmail(work: Path, port: int, delete: bool) -> list[bytes]:
    dest = work / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    rc = work / "getmailrc"
    rc.write_text(f"""[retriever]
type = SimplePOP3Retriever
server = 127.0.0.1
port = {port}
username = {USER}
password = {PASSWORD}

[destination]
type = Maildir
path = {dest}/

[options]
delete = {str(delete).lower()}
read_all = false
delivered_to = false
received = false
verbose = 0
""")
    vmail = mail_user()  # getmail refuses to deliver as root
    chown_tree(work, vmail.pw_uid, vmail.pw_gid)
    result = subprocess.run(["getmail", f"--getmaildir={work}", f"--rcfile={rc}"],
                            capture_output=True, timeout=60, user=vmail.pw_uid,
                            group=vmail.pw_gid, env={"HOME": str(work), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    got = sorted((dest / "new").iterdir())
    # getmail's Maildir destination always adds this one header line first
    out = [p.read_bytes().removeprefix(b"Return-Path: <unknown>\n") for p in got]
    for p in got:
        p.unlink()
    return out


def test_getmail_keep_then_delete() -> None:
    assert shutil.which("getmail"), "getmail missing (Debian getmail6; scripts/test installs it)"
    root = server_dir("getmail")
    vmail = mail_user()
    maildir = root / "mail" / USER
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i, msg in enumerate(MESSAGES):
        (maildir / "new" / f"170000000{i}.M{i}P1.host").write_bytes(msg)
    chown_tree(root / "mail", vmail.pw_uid, vmail.pw_gid)
    passwd = root / "users"
    passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{vmail.pw_uid}:{vmail.pw_gid}::"
                      f"{root}/home::\n")
    cote = CoteServer(mail_location=f"maildir:{root}/mail/%u", passwd_file=passwd,
                      protocols="pop3").start()
    work = server_dir("getmail-client")
    try:
        want = sorted(expected(m) for m in MESSAGES)
        assert sorted(run_getmail(work, cote.ports["pop3"], delete=False)) == want
        # keep mode: still there; getmail remembers the UIDLs and fetches nothing again
        assert len(list((maildir / "cur").iterdir())) == len(MESSAGES)
        assert run_getmail(work, cote.ports["pop3"], delete=False) == []
        (work / "Maildir").rename(work / "first")
        for old in work.glob("oldmail-*"):
            old.unlink()
        assert sorted(run_getmail(work, cote.ports["pop3"], delete=True)) == want
        assert list((maildir / "cur").iterdir()) == []
        assert list((maildir / "new").iterdir()) == []
        assert "Disconnected: Logged out" in cote.log_text()
    finally:
        cote.stop()
        cote.cleanup()
        remove_dir(work)
        remove_dir(root)
