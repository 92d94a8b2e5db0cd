"""``pop3``: POP3 sessions/s and RETR throughput, 10 clients, one user each.

Session: greeting, USER, PASS, STAT, UIDL, LIST, RETR of one message (each client walks its
mailbox in order), QUIT — nothing deleted, so the store stays the same. RETR throughput: one
logged-in connection per client retrieving messages in mailbox order, round and round (the
same bytes for both servers), counted per RETR and in MB/s of message data.
"""

from __future__ import annotations

from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, cpu_figure, rate_figure
from bench.scenarios.base import Scenario, bench_users, template
from bench.scenarios.imap_mixed import ImapMixed
from bench.servers import Server, Setup
from bench.wire import Pop3, ProtocolError

DEFAULT_CLIENTS = 10


def _count(stat: bytes) -> int:
    parts = stat.split()
    if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) == 0:
        raise ProtocolError(f"STAT: {stat[:60]!r}")
    return int(parts[1])


class Pop3Session(Workload):
    label = "session"

    async def op(self, ctx: ClientContext) -> None:
        ep = ctx.endpoints
        pop = ctx.state["pop3"] = await Pop3.logged_in(ep.host, ep.pop3, ctx.user, ctx.password)
        count = _count(await pop.command(b"STAT"))
        await pop.multiline(b"UIDL")
        await pop.multiline(b"LIST")
        cursor = ctx.state.get("cursor", ctx.cid) % count + 1
        size = await pop.multiline(b"RETR %d" % cursor)
        ctx.count("bytes", size)
        await pop.command(b"QUIT")
        await pop.close()
        ctx.state.clear()
        ctx.state["cursor"] = cursor


class Pop3Retr(Workload):
    label = "RETR"

    async def open(self, ctx: ClientContext) -> None:
        ep = ctx.endpoints
        pop = ctx.state["pop3"] = await Pop3.logged_in(ep.host, ep.pop3, ctx.user, ctx.password)
        ctx.state["count"] = _count(await pop.command(b"STAT"))
        ctx.state["next"] = ctx.cid % ctx.state["count"]

    async def op(self, ctx: ClientContext) -> None:
        pop: Pop3 = ctx.state["pop3"]
        n = ctx.state["next"]
        ctx.state["next"] = (n + 1) % ctx.state["count"]
        size = await pop.multiline(b"RETR %d" % (n + 1))
        if size <= 0:
            raise ProtocolError(f"RETR {n + 1}: empty")
        ctx.count("bytes", size)

    async def close(self, ctx: ClientContext) -> None:
        pop: Pop3 | None = ctx.state.get("pop3")
        if pop is not None:
            await pop.command(b"QUIT")
            await pop.close()
        ctx.state.clear()


class Pop3Bench(Scenario):
    name = "pop3"
    protocols = ("pop3",)
    summary = "POP3 sessions/s and RETR/s (MB/s) at 10 clients"

    def setup(self) -> Setup:
        users = bench_users(self.options.clients or DEFAULT_CLIENTS)
        self.users = list(users.items())
        inbox = template(ImapMixed(self.options).spec())
        return Setup(users, {u: inbox for u in users})

    def run(self, server: Server) -> list[Figure]:
        clients = self.options.clients or DEFAULT_CLIENTS
        variant = f"{clients} clients"
        figures = []
        for workload, metric in ((Pop3Session(), "sessions/s"), (Pop3Retr(), "RETR/s")):
            cpu = server.cpu_seconds()
            stats = run_load(workload, server.endpoints, self.users, clients=clients,
                             seconds=self.seconds(), warmup=self.warmup(),
                             workers=self.options.workers, seed=self.options.seed)
            figures.append(rate_figure(stats, variant, metric))
            if metric == "sessions/s":  # whole-server CPU: what the rate is on 2 busy cores
                figures.append(cpu_figure(stats, variant, "CPU ms/session",
                                          server.cpu_seconds() - cpu))
            if metric == "RETR/s":
                mb = stats.counters.get("bytes", 0) / 1e6 / stats.seconds
                figures.append(Figure(variant, "MB/s", mb, True))  # errors are on RETR/s
        return figures
