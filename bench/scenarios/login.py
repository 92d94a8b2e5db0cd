"""``login``: IMAP logins/s, plaintext on the imap port and implicit TLS on imaps.

A login is a whole connection: connect (TLS handshake on imaps, RSA-2048 certificate),
greeting, LOGIN, LOGOUT, close — what a mail client polling for new mail costs the server.
"""

from __future__ import annotations

from bench import store
from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, cpu_figure, rate_figure
from bench.scenarios.base import Scenario, bench_users, template
from bench.servers import Server, Setup
from bench.wire import Imap, tls_context


async def imap_login(ctx: ClientContext, tls: bool) -> Imap:
    """A logged-in IMAP connection for ``ctx``'s user, on imaps when ``tls``."""
    ep = ctx.endpoints
    if tls:
        return await Imap.logged_in(ep.host, ep.imaps, ctx.user, ctx.password, tls_context())
    return await Imap.logged_in(ep.host, ep.imap, ctx.user, ctx.password)

DEFAULT_CLIENTS = 10
IDLE_SPEC = store.StoreSpec("idle", 10, profile="small", folders=False)


class LoginLogout(Workload):
    label = "login"

    def __init__(self, tls: bool) -> None:
        self.tls = tls

    async def op(self, ctx: ClientContext) -> None:
        imap = ctx.state["imap"] = await imap_login(ctx, self.tls)
        await imap.logout()
        await imap.close()
        ctx.state.clear()


class Login(Scenario):
    name = "login"
    summary = "IMAP logins/s (connect, LOGIN, LOGOUT), plain and TLS"

    def setup(self) -> Setup:
        users = bench_users(self.options.clients or DEFAULT_CLIENTS)
        self.users = list(users.items())
        mail = template(IDLE_SPEC)
        return Setup(users, {u: mail for u in users})

    def run(self, server: Server) -> list[Figure]:
        figures = []
        for tls in (False, True):
            cpu = server.cpu_seconds()
            stats = run_load(LoginLogout(tls), server.endpoints, self.users,
                             clients=self.options.clients or DEFAULT_CLIENTS,
                             seconds=self.seconds(), warmup=self.warmup(),
                             workers=self.options.workers, seed=self.options.seed)
            variant = "TLS" if tls else "plain"
            figures.append(rate_figure(stats, variant, "logins/s"))
            figures.append(cpu_figure(stats, variant, "CPU ms/login", server.cpu_seconds() - cpu))
        return figures
