"""Real IMAP clients against the whole cote stack (master, imap-login, hand-off, imap):

- mbsync (isync) syncs a 2,000-message account with 10 folders down, then flag changes, a
  deletion and a new message up;
- fetchmail retrieves over IMAP and leaves the mail (keep);
- imapclient resynchronises after a disconnect with CONDSTORE (CHANGEDSINCE) and QRESYNC
  (SELECT … QRESYNC reporting VANISHED (EARLIER) and the changed flags).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

FOLDERS = [f"Folder{i}" for i in range(1, 10)]  # and INBOX: 10 folders
PER_FOLDER = 200


def message(folder: str, n: int) -> bytes:
    return (f"From: sender{n}@example.org\r\nTo: mbsync@example.org\r\n"
            f"Subject: {folder} message {n}\r\nMessage-ID: <{folder}.{n}@example.org>\r\n"
            f"Date: Mon, 2 Jan 2023 10:{n % 60:02d}:00 +0000\r\n\r\n"
            f"Body of {folder} {n}.\r\n").encode()


def fill_maildir(root: Path) -> None:
    """2,000 messages written as an MTA or a previous server would have left them."""
    for folder in ["INBOX", *FOLDERS]:
        base = root if folder == "INBOX" else root / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for n in range(PER_FOLDER):
            body = message(folder, n)
            name = f"{1700000000 + n}.M{n}P1.host,S={len(body)}:2,{'S' if n % 2 else ''}"
            (base / "cur" / name).write_bytes(body)
    (root / "subscriptions").write_text("".join(f"{f}\n" for f in FOLDERS))
    vmail = mail_user()
    chown_tree(root, vmail.pw_uid, vmail.pw_gid)


@pytest.fixture(scope="module")
def cote() -> Iterator[CoteServer]:
    users = DovecotOracle(users={"sync": "secret", "fetch": "secret", "resync": "secret"})
    users.write_config()
    fill_maildir(users.user_maildir("sync"))
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="imap")
    try:
        yield server.start()
    finally:
        server.cleanup()
        remove_dir(users.dir)


def client(cote: CoteServer, user: str) -> IMAPClient:
    imap = IMAPClient("127.0.0.1", port=cote.ports["imap"], ssl=False, timeout=60)
    imap.login(user, "secret")
    return imap


def mbsync(config: Path) -> None:
    done = subprocess.run(["mbsync", "-c", str(config), "-a"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def local_messages(folder: Path) -> list[Path]:
    return sorted([*(folder / "cur").iterdir(), *(folder / "new").iterdir()])


def text(path: Path) -> bytes:
    return path.read_bytes().replace(b"\r\n", b"\n")


def test_mbsync_two_way_sync_of_2000_messages(cote: CoteServer) -> None:
    assert shutil.which("mbsync"), "isync missing (Debian package; scripts/test installs it)"
    local = server_dir("mbsync")
    try:
        config = local / "mbsyncrc"
        config.write_text(f"""\
IMAPAccount cote
Host 127.0.0.1
Port {cote.ports['imap']}
User sync
Pass secret
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account cote

MaildirStore local
Path {local}/mail/
Inbox {local}/mail/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Near
Expunge Both
Sync All
SyncState *
""")
        (local / "mail").mkdir()
        mbsync(config)
        folders = {p.name for p in (local / "mail").iterdir()}
        assert folders == {"INBOX", *FOLDERS}
        for name in folders:
            got = local_messages(local / "mail" / name)
            assert len(got) == PER_FOLDER, name
        sample = local_messages(local / "mail" / "Folder3")
        # mbsync stores with LF line ends
        assert sum(b"Subject: Folder3 message 7\n" in text(p) for p in sample) == 1
        seen = [p for p in sample if p.name.endswith(",S") or ":2,S" in p.name]
        assert len(seen) == PER_FOLDER // 2  # \Seen came down as Maildir S

        # Up: flag one message, delete one, add one in Folder5.
        box = local / "mail" / "Folder5"
        msgs = local_messages(box)
        flagged = next(p for p in msgs if b"Subject: Folder5 message 10\n" in text(p))
        flagged.rename(flagged.parent.parent / "cur" / (flagged.name.split(":2,")[0] + ":2,FS"))
        doomed = next(p for p in msgs if b"Subject: Folder5 message 11\n" in text(p))
        doomed.rename(doomed.parent.parent / "cur" / (doomed.name.split(":2,")[0] + ":2,ST"))
        (box / "new" / "1800000000.local.host").write_bytes(
            b"Subject: written by mbsync\n\nuploaded\n")
        mbsync(config)

        imap = client(cote, "sync")
        imap.select_folder("Folder5")
        assert imap.search(["HEADER", "Message-ID", "<Folder5.10@", "FLAGGED"]) != []
        assert imap.search(["HEADER", "Message-ID", "<Folder5.11@"]) == []  # expunged (Expunge Both)
        [uid] = imap.search(["SUBJECT", "written by mbsync"])
        assert imap.fetch([uid], ["BODY.PEEK[TEXT]"])[uid][b"BODY[TEXT]"].strip() == b"uploaded"
        assert imap.folder_status("Folder5", ["MESSAGES"])[b"MESSAGES"] == PER_FOLDER
        imap.logout()
    finally:
        remove_dir(local)


def test_fetchmail_over_imap(cote: CoteServer) -> None:
    assert shutil.which("fetchmail"), "fetchmail missing (Debian package; scripts/test installs it)"
    imap = client(cote, "fetch")
    for n in range(3):
        imap.append("INBOX", message("fetch", n))
    imap.logout()
    work = server_dir("fetchmail-imap")
    try:
        rc = work / "fetchmailrc"
        rc.write_text(f'poll 127.0.0.1 protocol IMAP port {cote.ports["imap"]} auth password\n'
                      f'  user "fetch" password "secret" is root here\n'
                      f'  keep fetchall mda "/bin/sh -c \'cat > {work}/msg.$$$$\'"\n')
        rc.chmod(0o600)
        done = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "-v", "--sslproto", "",
                               "--idfile", str(work / "ids")], capture_output=True,
                              env=dict(os.environ, HOME=str(work)), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        got = sorted(p.read_bytes().replace(b"\r\n", b"\n") for p in work.glob("msg.*"))
        assert len(got) == 3
        assert all(b"Subject: fetch message " in m for m in got)
    finally:
        remove_dir(work)
    imap = client(cote, "fetch")
    assert imap.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 3  # keep
    imap.logout()


def test_imapclient_condstore_and_qresync_resync(cote: CoteServer) -> None:
    first = client(cote, "resync")
    for n in range(5):
        first.append("INBOX", message("resync", n))
    assert b"QRESYNC" in first.capabilities() and b"CONDSTORE" in first.capabilities()
    first.enable("QRESYNC")
    state = first.select_folder("INBOX")
    uidvalidity, modseq = state[b"UIDVALIDITY"], state[b"HIGHESTMODSEQ"]
    uids = first.search("ALL")
    assert len(uids) == 5
    first.logout()  # the client goes away; another one changes the mailbox

    other = client(cote, "resync")
    other.select_folder("INBOX")
    other.add_flags([uids[1]], [b"\\Flagged"])
    other.delete_messages([uids[3]])
    other.expunge()
    other.logout()

    again = client(cote, "resync")
    # CONDSTORE: only what changed since the saved modseq
    again.select_folder("INBOX")
    remaining = again.search("ALL")
    assert remaining == [u for u in uids if u != uids[3]]
    changed = again.fetch(remaining, ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
    assert list(changed) == [uids[1]]
    assert b"\\Flagged" in changed[uids[1]][b"FLAGS"]
    again.close_folder()
    # QRESYNC: the SELECT itself reports the vanished UID and the changed flags
    again.enable("QRESYNC")
    typ, data = again._imap._simple_command(  # imapclient has no SELECT (QRESYNC ...) call
        "SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {modseq}))")
    assert typ == "OK", data
    untagged = again._imap.untagged_responses
    vanished = [v for v in untagged.get("VANISHED", [])]
    assert vanished == [f"(EARLIER) {uids[3]}".encode()], untagged
    fetched = b" ".join(untagged.get("FETCH", []))
    assert f"UID {uids[1]}".encode() in fetched and b"\\Flagged" in fetched
    again.logout()
