"""Byte-exact transcripts of cote's IMAP mail process on a Maildir it creates itself: the
CONDSTORE/QRESYNC flows (modseqs are cote's own, so these cannot be compared with Dovecot's),
IDLE's continuation and DONE, and input that must get an error but never end the session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imapd.conftest import Client, cote_process
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir


@pytest.fixture
def maildir() -> Iterator[Path]:
    root = server_dir("imapd-transcripts")
    vmail = mail_user()
    chown_tree(root, vmail.pw_uid, vmail.pw_gid)
    yield root / "Maildir"
    remove_dir(root)


def session(maildir: Path) -> Client:
    sock, proc = cote_process(maildir, "tuser")
    c = Client(sock, proc)
    assert c.line().startswith(b"* PREAUTH [CAPABILITY IMAP4rev1 ")
    return c


def run(c: Client, script: str) -> str:
    """Send each ``C: tag command`` line; return what came back, timings and UIDVALIDITY
    masked, in the same ``S:`` form as the expected transcript."""
    out = []
    for line in script.strip().splitlines():
        line = line.strip()
        if not line.startswith("C: "):
            continue
        tag, _, command = line[3:].partition(" ")
        command = command.replace("\\n", "\r\n")
        out.append(re.sub(r"QRESYNC \(\d+", "QRESYNC (V", line))
        reply = c.command(command.encode(), tag).decode()
        reply = re.sub(r" \(\d+\.\d{3} \+ \d+\.\d{3}(?: \+ \d+\.\d{3})? secs\)\.", "", reply)
        reply = re.sub(r"(UIDVALIDITY|APPENDUID|QRESYNC \() ?\d+", r"\1 V", reply)
        out.extend("S: " + x for x in reply.split("\r\n") if x)
    return "\n".join(out)


def expected(script: str) -> str:
    return "\n".join(x.strip() for x in script.strip().splitlines() if x.strip())


CONDSTORE = """
C: a ENABLE QRESYNC
S: * ENABLED QRESYNC
S: a OK Enabled
C: b APPEND INBOX {6+}\\nA: b\\n
S: b OK [APPENDUID V 1] Append completed
C: c APPEND INBOX {6+}\\nA: c\\n {6+}\\nA: d\\n
S: c OK [APPENDUID V 2:3] Append completed
C: d SELECT INBOX
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
S: * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.
S: * 3 EXISTS
S: * 3 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY V] UIDs valid
S: * OK [UIDNEXT 4] Predicted next UID
S: * OK [HIGHESTMODSEQ 3] Highest
S: d OK [READ-WRITE] Select completed
C: e STORE 1 +FLAGS (\\Seen)
S: * 1 FETCH (UID 1 MODSEQ (4) FLAGS (\\Seen \\Recent))
S: e OK Store completed
C: f STORE 2 +FLAGS.SILENT (\\Deleted)
S: * 2 FETCH (UID 2 MODSEQ (5))
S: f OK Store completed
C: g EXPUNGE
S: * VANISHED 2
S: * 2 RECENT
S: g OK [HIGHESTMODSEQ 6] Expunge completed
C: h UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)
S: * VANISHED (EARLIER) 2
S: * 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (4))
S: * 2 FETCH (UID 3 FLAGS (\\Recent) MODSEQ (3))
S: h OK Fetch completed
C: i UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3)
S: * 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (4))
S: i OK Fetch completed
C: j STORE 1,2 (UNCHANGEDSINCE 3) +FLAGS (\\Flagged)
S: * 2 FETCH (UID 3 MODSEQ (7) FLAGS (\\Flagged \\Recent))
S: j OK [MODIFIED 1] Conditional store failed
C: k SEARCH MODSEQ 5
S: * SEARCH 2 (MODSEQ 7)
S: k OK Search completed
C: l SEARCH RETURN (MIN MAX COUNT) MODSEQ 4
S: * ESEARCH (TAG "l") MIN 1 MAX 2 COUNT 2 MODSEQ 7
S: l OK Search completed
C: m UNSELECT
S: m OK Unselect completed
C: n SELECT INBOX (QRESYNC (V 4 1:5))
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
S: * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.
S: * 2 EXISTS
S: * 0 RECENT
S: * OK [UNSEEN 2] First unseen.
S: * OK [UIDVALIDITY V] UIDs valid
S: * OK [UIDNEXT 4] Predicted next UID
S: * OK [HIGHESTMODSEQ 7] Highest
S: * VANISHED (EARLIER) 2
S: * 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (7))
S: n OK [READ-WRITE] Select completed
"""


def test_condstore_and_qresync(maildir: Path) -> None:
    c = session(maildir)
    validity = re.search(rb"UIDVALIDITY (\d+)", c.command("STATUS INBOX (UIDVALIDITY)", "v"))
    assert validity
    script = CONDSTORE.replace("QRESYNC (V ", f"QRESYNC ({validity.group(1).decode()} ")
    assert run(c, script) == expected(CONDSTORE)
    c.command("LOGOUT", "z")
    c.close()


ERRORS = """
C: a FETCH 1 FLAGS
S: a BAD No mailbox selected
C: b SELECT INBOX
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
S: * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.
S: * 0 EXISTS
S: * 0 RECENT
S: * OK [UIDVALIDITY V] UIDs valid
S: * OK [UIDNEXT 1] Predicted next UID
S: b OK [READ-WRITE] Select completed
C: c FETCH 1 FLAGS
S: c BAD Error in IMAP command FETCH: Invalid messageset
C: d UID FETCH 1:* FLAGS
S: d OK Fetch completed
C: e FETCH 1:* (BODY[1.2.3.HEADER.FIELDS (A)]<0.1>
S: e BAD Error in IMAP command FETCH: Missing ')'
C: f BLURDYBLOOP
S: f BAD Error in IMAP command BLURDYBLOOP: Unknown command
C: g SEARCH CHARSET KOI8-QQ BODY x
S: g NO [BADCHARSET] Unknown charset
C: h IDLE
S: + idling
C: DONE
S: h OK Idle completed
C: i SELECT "&Jjo-"
S: * OK [CLOSED] Previous mailbox closed.
S: i NO Mailbox doesn't exist: \u263a
C: j CREATE "&Jjo-"
S: j OK Create completed
C: k LIST "" "&Jjo-"
S: * LIST (\\HasNoChildren) "." &Jjo-
S: k OK List completed
"""


def test_errors_keep_the_session(maildir: Path) -> None:
    c = session(maildir)
    got = []
    for line in ERRORS.strip().splitlines():
        line = line.strip()
        if line == "C: DONE":
            c.sock.sendall(b"DONE\r\n")
            got.append(line)
            reply = c.until("h").decode()
        elif line == "C: h IDLE":
            c.sock.sendall(b"h IDLE\r\n")
            got.append(line)
            got.append("S: " + c.line().decode().rstrip("\r\n"))
            continue
        elif line.startswith("C: "):
            got.append(line)
            tag, _, command = line[3:].partition(" ")
            reply = c.command(command, tag).decode("utf-8")
        else:
            continue
        reply = re.sub(r" \(\d+\.\d{3} \+ \d+\.\d{3}(?: \+ \d+\.\d{3})? secs\)\.", "", reply)
        reply = re.sub(r"UIDVALIDITY \d+", "UIDVALIDITY V", reply)
        got.extend("S: " + x for x in reply.split("\r\n") if x)
    assert "\n".join(got) == expected(ERRORS)
    c.command("LOGOUT", "z")
    c.close()
    assert c.proc is not None and c.proc.returncode == 0


def test_idle_notify_interval_and_logout_format_from_the_config(maildir: Path) -> None:
    config = maildir.parent / "dovecot.conf"
    config.write_text("imap_idle_notify_interval = 1 secs\n"
                      "imap_logout_format = in=%i out=%o expunged=%{expunged}\n")
    sock, proc = cote_process(maildir, "tuser", ["-c", str(config)])
    c = Client(sock, proc)
    c.line()
    c.command("SELECT INBOX", "s")
    sock.sendall(b"i IDLE\r\n")
    assert c.line() == b"+ idling\r\n"
    assert c.line() == b"* OK Still here\r\n"  # after about a second without changes
    sock.sendall(b"DONE\r\n")
    assert c.until("i").startswith(b"i OK Idle completed (")
    c.file.close()
    sock.close()
    assert proc.wait(10) == 0 and proc.stderr is not None
    log = proc.stderr.read().decode()
    assert re.search(r"Disconnected: Connection closed \(IDLE finished \d+\.\d{3} secs ago\) "
                     r"in=\d+ out=\d+ expunged=0\n", log), log
