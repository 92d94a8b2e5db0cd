"""``idle-memory``: PSS per idle logged-in IMAP connection (plain and TLS).

N clients (default 1,000) log in, SELECT INBOX and enter IDLE; both servers run with
``imap_hibernate_timeout = HIBERNATE_TIMEOUT`` and the measure waits for it to pass, so the idle
sessions sit in imap-hibernate. Once all are idling the PSS of
every process of the server (the master and all its descendants, from
/proc/PID/smaps_rollup) is summed and compared with the same sum before the connections,
taken on a freshly restarted server: (after − before) / N. PSS charges shared pages
fractionally, so forked processes are not counted twice. Each connection has its own user
(Dovecot allows 10 per user and IP).
"""

from __future__ import annotations

import time

from bench import store
from bench.load import ClientContext, Workload, hold_connections
from bench.report import Figure
from bench.scenarios.base import Scenario, bench_users, template
from bench.scenarios.login import imap_login
from bench.servers import Server, Setup
from bench.wire import Imap

DEFAULT_CONNECTIONS = 1000
SMOKE_CONNECTIONS = 20
SPEC = store.StoreSpec("idle", 10, profile="small", folders=False)
HIBERNATE_TIMEOUT = 2
"""``imap_hibernate_timeout`` (s) both servers run with: idle clients move to imap-hibernate
(Dovecot needs imap-master owned by $default_internal_user for it, as its docs say)."""
HIBERNATE_CONF = f"""\
imap_hibernate_timeout = {HIBERNATE_TIMEOUT}s
service imap {{
  unix_listener imap-master {{
    user = $default_internal_user
  }}
}}
"""


def pss_kib(pids: list[int]) -> int:
    """Sum of Pss over the given processes (processes that vanished count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class IdleClient(Workload):
    label = "idle"

    def __init__(self, tls: bool) -> None:
        self.tls = tls

    async def open(self, ctx: ClientContext) -> None:
        imap = ctx.state["imap"] = await imap_login(ctx, self.tls)
        await imap.command(b"SELECT INBOX")
        ctx.state["idle"] = await imap.idle()

    async def op(self, ctx: ClientContext) -> None:
        imap: Imap = ctx.state["imap"]
        await imap.command(b"NOOP")

    async def close(self, ctx: ClientContext) -> None:
        imap: Imap = ctx.state["imap"]
        imap.write(b"DONE\r\n")
        await imap.drain()
        await imap.reply(ctx.state["idle"])
        await imap.logout()
        await imap.close()
        ctx.state.clear()


def settle(server: Server, seconds: float) -> int:
    """Wait until the server's process count stops changing, then return its PSS (KiB)."""
    deadline = time.monotonic() + seconds
    previous = -1
    while time.monotonic() < deadline:
        count = len(server.pids())
        if count == previous:
            break
        previous = count
        time.sleep(0.3)
    return pss_kib(server.pids())


def settle_hibernated(server: Server, seconds: float) -> int:
    """As ``settle``, but the count must hold for 2 s: on a busy machine imap processes
    hand their clients to imap-hibernate over several seconds."""
    deadline = time.monotonic() + seconds
    count, since = len(server.pids()), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 2.0:
        time.sleep(0.3)
        now = len(server.pids())
        if now != count:
            count, since = now, time.monotonic()
    return pss_kib(server.pids())


class IdleMemory(Scenario):
    name = "idle-memory"
    summary = "PSS per idle logged-in IMAP connection (IDLE), plain and TLS"
    timed_load = False

    def connections(self) -> int:
        if self.options.connections or self.options.clients:
            return self.options.connections or self.options.clients or 0
        return SMOKE_CONNECTIONS if self.options.smoke else DEFAULT_CONNECTIONS

    def setup(self) -> Setup:
        n = self.connections()
        users = bench_users(n)
        self.users = list(users.items())
        mail = template(SPEC)
        # Dovecot's stock limits allow ~100 login and 1024 imap processes and 1000 clients
        # per service: raise the limits (not the process model) so N connections fit.
        extra = HIBERNATE_CONF
        if n > 80:
            extra += (f"default_process_limit = {n + 100}\n"
                     f"default_client_limit = {2 * n + 200}\n"
                     f"service imap {{\n  process_limit = {n + 100}\n}}\n")
        return Setup(users, {u: mail for u in users}, extra_conf=extra)

    def run(self, server: Server) -> list[Figure]:
        n = self.connections()
        figures = []
        for tls in (False, True):
            variant = "TLS" if tls else "plain"
            # From a fresh process tree each time: after a variant (or an earlier run) the
            # processes keep heap they grew and freed, and the next one's connections would
            # fill that first (seen: per-connection figures of ~0 and below 0).
            server.restart(self.protocols)
            before = settle(server, 5)
            processes_before = len(server.pids())
            held = hold_connections(IdleClient(tls), server.endpoints, self.users,
                                    connections=n, workers=self.options.workers)
            try:
                time.sleep(HIBERNATE_TIMEOUT)
                after = settle_hibernated(server, 60)  # the IDLE sessions have hibernated
                processes_after = len(server.pids())
            finally:
                stats = held.release()
            if held.opened < n:
                stats.errors[f"only {held.opened} of {n} connections reached IDLE"] += 1
            per_conn = (after - before) / 1024 / max(1, held.opened)
            figures.append(Figure(variant, "MB/conn", per_conn, False, errors=stats.errors,
                                  extra={"connections": held.opened, "pss_before_kib": before,
                                         "pss_after_kib": after,
                                         "processes_before": processes_before,
                                         "processes_after": processes_after,
                                         "imap_hibernate_timeout_s": HIBERNATE_TIMEOUT}))
            figures.append(Figure(variant, "MB total", (after - before) / 1024, False))
            settle(server, 10)
        return figures
