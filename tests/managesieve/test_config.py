"""``protocols = ... sieve`` starts managesieve-login on 4190 and the managesieve service,
as Dovecot does, with nothing else configured for them (the built-in service defaults:
chrooted login process, ``login/sieve`` hand-off socket)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.managesieve.support import SieveClient, plain
from tests.support.cote import CoteServer
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

DEFAULT_PORT = 4190


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not port_free(DEFAULT_PORT), reason="port 4190 is in use on this host")
def test_sieve_protocol_listens_on_4190() -> None:
    base = server_dir("msconf")
    vmail = mail_user()
    home = base / "home"
    home.mkdir()
    chown_tree(home, vmail.pw_uid, vmail.pw_gid)
    users = Path(base / "users")
    users.write_text(f"u:{{PLAIN}}p:{vmail.pw_uid}:{vmail.pw_gid}::{home}/u::\n")
    server = CoteServer(mail_location=f"maildir:{base}/mail/%u", passwd_file=users,
                        protocols="pop3 sieve")
    try:
        server.start()
        client = None
        for _ in range(100):
            try:
                client = SieveClient(DEFAULT_PORT)
                break
            except OSError:
                time.sleep(0.1)
        assert client is not None, server.log_text()
        assert client.greeting.endswith(b'OK "Dovecot (Debian) ready."\r\n')
        reply = client.command(f'AUTHENTICATE "PLAIN" "{plain("u", "p")}"\r\n'.encode())
        assert reply == b'OK "Logged in."\r\n'
        assert client.command(b'PUTSCRIPT "s" "keep;"\r\n') == b'OK "PUTSCRIPT completed."\r\n'
        client.close()
        assert (home / "u" / "sieve" / "s.sieve").read_bytes() == b"keep;"
        assert "starting up for pop3, sieve" in server.log_text()
    finally:
        server.cleanup()
        remove_dir(base)
