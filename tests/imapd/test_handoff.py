"""IMAP through cote's own processes: master → imap-login → auth → hand-off → imap → Maildir,
with real clients (Python's imaplib, curl) and Dovecot serving the same store as reference."""

from __future__ import annotations

import imaplib
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.imapd.conftest import MESSAGES, USERS, Client
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


@dataclass
class Setup:
    dovecot: DovecotOracle
    cote: CoteServer


@pytest.fixture(scope="module")
def setup(store: DovecotOracle) -> Iterator[Setup]:
    cote = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                      passwd_file=store.dir / "users", protocols="imap")
    try:
        cote.start()
        yield Setup(store, cote)
    finally:
        cote.cleanup()


def test_imaplib_logs_in_and_reads_like_dovecot(setup: Setup) -> None:
    theirs = imaplib.IMAP4("127.0.0.1", setup.dovecot.ports["imap"])
    theirs.login("dcuser", USERS["dcuser"])
    ours = imaplib.IMAP4("127.0.0.1", setup.cote.ports["imap"])
    typ, data = ours.login("coteuser", USERS["coteuser"])
    assert typ == "OK" and data == [b"Logged in"]
    caps = ours.capability()[1][0].split()
    assert b"MOVE" in caps and b"IDLE" in caps and b"AUTH=PLAIN" not in caps
    assert ours.select("INBOX", readonly=True)[1] == [str(len(MESSAGES)).encode()]
    theirs.select("INBOX", readonly=True)
    for items in ("(FLAGS UID RFC822.SIZE)", "(ENVELOPE)", "(BODY.PEEK[])", "(BODYSTRUCTURE)"):
        assert ours.fetch("1:*", items) == theirs.fetch("1:*", items), items
    assert ours.search(None, "FROM", "alice") == theirs.search(None, "FROM", "alice")
    assert ours.list()[1] and ours.logout()[0] == "BYE"
    theirs.logout()
    lines = setup.cote.wait_for_log("imap(coteuser)")
    assert any("Disconnected: Logged out in=" in x for x in lines), lines


def test_login_reply_after_capability_has_untagged_capability(setup: Setup) -> None:
    c = Client(socket.create_connection(("127.0.0.1", setup.cote.ports["imap"]), timeout=10))
    assert c.line().startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    c.command("CAPABILITY", "a")
    reply = c.command(f"LOGIN coteuser {USERS['coteuser']}", "b")
    assert re.fullmatch(rb"\* CAPABILITY IMAP4rev1 [^\r]* MOVE [^\r]*\r\nb OK Logged in\r\n",
                        reply), reply
    assert c.command("NOOP", "c").startswith(b"c OK NOOP completed")
    c.command("LOGOUT", "d")
    c.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_fetches_a_message(setup: Setup) -> None:
    url = f"imap://127.0.0.1:{setup.cote.ports['imap']}/INBOX;UID=1"
    out = subprocess.run(["curl", "-s", "--max-time", "20", "-u",
                          f"coteuser:{USERS['coteuser']}", url],
                         capture_output=True, check=True).stdout
    assert out.replace(b"\r\n", b"\n") == MESSAGES[0][1].replace(b"\r\n", b"\n")


def test_commands_pipelined_after_login_are_served(setup: Setup) -> None:
    """Bytes the client sent right after LOGIN travel with the hand-off."""
    c = Client(socket.create_connection(("127.0.0.1", setup.cote.ports["imap"]), timeout=10))
    c.line()
    c.sock.sendall(f"a LOGIN coteuser {USERS['coteuser']}\r\nb SELECT INBOX\r\n"
                   "c FETCH 1 (UID)\r\n".encode())
    assert c.until("a").startswith(b"a OK [CAPABILITY IMAP4rev1 ")
    selected = c.until("b")
    assert selected.startswith(b"* FLAGS (") and b"\r\nb OK [READ-WRITE] Select completed" \
        in selected, selected
    assert c.until("c").startswith(b"* 1 FETCH (UID 1)\r\nc OK Fetch completed")
    c.command("LOGOUT", "d")
    c.close()
