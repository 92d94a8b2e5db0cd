"""A silent client is disconnected as Dovecot does it (``-ERR Disconnected for inactivity.``,
logout reason ``Disconnected for inactivity``) — after 10 minutes in Dovecot and cote; the
test shortens cote's timeout and serves a real Maildir over a real socket pair."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from cote.log import Logger
from cote.mailproc.channel import Channel
from cote.mailproc.pop3 import server
from cote.mailproc.pop3.maildrop import Maildrop, Pop3Settings
from cote.storage import open_storage


def test_silent_client_is_disconnected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert server.IDLE_TIMEOUT_SECS == 600.0  # Dovecot's CLIENT_IDLE_TIMEOUT_MSECS
    monkeypatch.setattr(server, "IDLE_TIMEOUT_SECS", 0.3)
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True)
    (tmp_path / "Maildir" / "new" / "1700000000.M1P1.host").write_bytes(b"Subject: x\n\ny\n")
    log_r, log_w = os.pipe()
    ours, theirs = socket.socketpair()
    mailboxes = open_storage(f"maildir:{tmp_path}/Maildir", home=str(tmp_path))

    ours.sendall(b"STAT\r\n")
    with mailboxes.open("INBOX") as inbox, Maildrop(inbox, Pop3Settings()) as maildrop:
        reason = server.serve(Channel(theirs), maildrop, Logger("pop3(u): ", log_w))
    ours.settimeout(5)
    got = b""
    while chunk := ours.recv(4096):
        got += chunk
    os.close(log_w)
    log = os.read(log_r, 65536)
    os.close(log_r)
    assert reason == "Disconnected for inactivity"
    assert got == b"+OK Logged in.\r\n+OK 1 17\r\n-ERR Disconnected for inactivity.\r\n"
    assert b"Disconnected: Disconnected for inactivity top=0/0" in log
