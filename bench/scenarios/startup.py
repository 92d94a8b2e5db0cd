"""``startup``: seconds from starting the server process to its first successful IMAP login.

Each run stops the running server, starts it again on the same config and store, and polls
(connect, greeting, LOGIN) every 5 ms until a login succeeds.
"""

from __future__ import annotations

import socket
import time

from bench import store
from bench.report import Figure, time_figure
from bench.scenarios.base import Scenario, bench_users, template
from bench.servers import Server, ServerUnavailable, Setup

SPEC = store.StoreSpec("idle", 10, profile="small", folders=False)
TIMEOUT = 30.0


def try_login(port: int, user: str, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            f = s.makefile("rb")
            if not f.readline().startswith(b"* OK"):
                return False
            s.sendall(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
            while True:
                line = f.readline()
                if not line:
                    return False
                if line.startswith(b"a "):
                    ok = line.startswith(b"a OK")
                    break
            s.sendall(b"b LOGOUT\r\n")
            return ok
    except OSError:
        return False


class Startup(Scenario):
    name = "startup"
    summary = "seconds from process start to the first successful login"
    timed_load = False

    def setup(self) -> Setup:
        users = bench_users(1)
        self.user, self.password = next(iter(users.items()))
        return Setup(users, {self.user: template(SPEC)})

    def run(self, server: Server) -> list[Figure]:
        server.stop()
        time.sleep(0.2)
        server.launch()
        started = server.launched_at
        while True:
            if try_login(server.ports["imap"], self.user, self.password):
                elapsed = time.monotonic() - started
                break
            if time.monotonic() - started > TIMEOUT:
                raise ServerUnavailable(f"no successful login within {TIMEOUT:.0f} s")
            if not server.running:
                server.check_alive()  # raises with the exit reason
            time.sleep(0.005)
        return [time_figure("first login", "seconds", elapsed)]
