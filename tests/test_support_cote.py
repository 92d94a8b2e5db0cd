"""The CoteServer fixture survives a port taken between choosing and binding it (parallel
tests draw free ports independently: CI saw 'Address already in use')."""

from __future__ import annotations

import socket

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir


def test_a_taken_port_is_drawn_again() -> None:
    users = DovecotOracle(users={"u": "p"})
    users.write_config()
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="imap pop3")
    taken = server.ports["pop3"]
    with socket.socket() as blocker:
        # bound, not listening: cote's bind fails, but a connection never reaches the
        # blocker (which would look like cote answering)
        blocker.bind(("127.0.0.1", taken))
        try:
            server.start()
            assert server.ports["pop3"] != taken
            with socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=10) as c:
                assert c.recv(100).startswith(b"+OK")
        finally:
            server.cleanup()
            remove_dir(users.dir)
