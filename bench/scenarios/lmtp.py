"""``lmtp``: LMTP deliveries/s of 10 KB and 1 MB messages from 4 concurrent clients.

Each client keeps one LMTP connection (as Postfix's lmtp client does) and delivers one message
per transaction to its own user, with MAIL/RCPT/DATA pipelined; the server must answer 250
for the recipient after the data. The messages are generated (CRLF, dot-stuffed) once; each
delivery puts a header line of its own in front, so no two transactions are alike (as with a
real MTA: the same message, sender, recipient and queue id again is a retry).
"""

from __future__ import annotations

import os

from bench import store
from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, rate_figure
from bench.scenarios.base import Scenario, bench_users
from bench.servers import Server, Setup
from bench.wire import Lmtp, smtp_data

DEFAULT_CLIENTS = 4
SIZES = ((10_000, "10 KB"), (1_000_000, "1 MB"))


class Deliver(Workload):
    label = "delivery"

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    async def open(self, ctx: ClientContext) -> None:
        ep = ctx.endpoints
        lmtp = ctx.state["lmtp"] = await Lmtp.open(ep.host, ep.lmtp)
        await lmtp.hello()
        ctx.state["next"] = ctx.cid
        ctx.state["token"] = os.urandom(8).hex().encode()  # unique per client and run

    async def op(self, ctx: ClientContext) -> None:
        lmtp: Lmtp = ctx.state["lmtp"]
        n = ctx.state["next"]
        ctx.state["next"] = n + 1
        # A header of its own per delivery: the generated messages carry a Received header
        # with a queue id, and the same bytes again would be a retry of the same transaction,
        # which cote's delivery journal answers without saving a second copy.
        data = (b"X-Bench-Delivery: %s-%d\r\n" % (ctx.state["token"], n)
                + self.messages[n % len(self.messages)])
        await lmtp.deliver("sender@example.org", [ctx.user], data)
        ctx.count("bytes", len(data))

    async def close(self, ctx: ClientContext) -> None:
        lmtp: Lmtp | None = ctx.state.get("lmtp")
        if lmtp is not None:
            await lmtp.quit()
            await lmtp.close()
        ctx.state.clear()


class LmtpBench(Scenario):
    name = "lmtp"
    protocols = ("lmtp",)
    summary = "LMTP deliveries/s, 10 KB and 1 MB, 4 clients"

    def setup(self) -> Setup:
        users = bench_users(self.options.clients or DEFAULT_CLIENTS)
        self.users = list(users.items())
        generator = store.MessageGenerator(self.options.seed + 15_485_863)
        self.messages = {size: [smtp_data(generator.message(i, size).data) for i in range(4)]
                         for size, _ in SIZES}
        return Setup(users)

    def run(self, server: Server) -> list[Figure]:
        clients = self.options.clients or DEFAULT_CLIENTS
        figures = []
        for size, label in SIZES:
            stats = run_load(Deliver(self.messages[size]), server.endpoints, self.users,
                             clients=clients, seconds=self.seconds(), warmup=self.warmup(),
                             workers=self.options.workers, seed=self.options.seed)
            figures.append(rate_figure(stats, label, "deliveries/s"))
        return figures
