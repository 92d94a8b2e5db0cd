"""login_proxy_max_disconnect_delay: when the backend drops its sessions, proxied clients are not all
disconnected in the same instant (so they do not all reconnect at once)."""

from __future__ import annotations

import select
import socket
import time

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


def test_backend_death_spreads_client_disconnects() -> None:
    backend = DovecotOracle(users={"u1": "p1"}).start()
    front_users = DovecotOracle(users={"u1": "p1"},
                                passwd_extra={"u1": f"proxy host=127.0.0.1 "
                                                    f"port={backend.ports['imap']}"})
    front_users.write_config()
    cote = CoteServer(mail_location=f"maildir:{front_users.dir}/mail/%u",
                      passwd_file=front_users.dir / "users", protocols="imap",
                      extra_conf="disable_plaintext_auth = no\n"
                                 "login_proxy_max_disconnect_delay = 2s\n"
                                 # one login process for both (the state is per process)
                                 "service imap-login {\n  service_count = 0\n"
                                 "  process_limit = 1\n}\n")
    try:
        cote.start()
        clients = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", cote.ports["imap"]), timeout=10)
            s.recv(4096)
            s.sendall(b"a LOGIN u1 p1\r\n")
            assert b"a OK " in s.recv(65536)
            clients.append(s)
        backend.doveadm("kick", "u1")  # the backend drops both sessions at once
        # Read both until one is disconnected; at that moment the other must still be open.
        first = None
        while first is None:
            readable, _, _ = select.select(clients, [], [], 10)
            assert readable, "nobody was disconnected"
            for s in readable:
                if s.recv(4096) == b"" and first is None:
                    first = s
        other = clients[1] if first is clients[0] else clients[0]
        while select.select([other], [], [], 0.2)[0]:
            assert other.recv(4096) != b"", "both clients were disconnected at once"
        deadline = time.monotonic() + 10
        while select.select([other], [], [], 1)[0] or time.monotonic() < deadline:
            if other.recv(4096) == b"":
                break
        else:
            raise AssertionError("the second client was never disconnected")
        lines = cote.wait_for_log("- disconnecting client in ")
        assert lines, cote.log_text()
        assert "proxy(u1,127.0.0.1:" in lines[0] and "Disconnected by server" in \
            lines[0]
        for s in clients:
            s.close()
    finally:
        cote.cleanup()
        front_users.cleanup()
        backend.cleanup()
