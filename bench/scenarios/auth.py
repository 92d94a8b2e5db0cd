"""``auth``: requests/s on the auth-client socket (what Postfix's SASL and login processes use).

Each client is one connection to ``$base_dir/auth-client`` (handshake once, not measured)
sending ``AUTH <id> PLAIN service=smtp secured resp=…`` for its user and expecting ``OK <id>``.
Two variants: one request in flight per connection (Postfix's smtpd) and 16 pipelined in one
write (a login process multiplexing its clients; it also takes the load generator's own
per-request cost out of the figure). A FAIL, or a reply for an id not asked, is an error.
``--backend pgsql|mysql|sqlite|ldap|pam`` puts the users in that database instead of the
passwd-file (bench/authdb.py); the figure's label names it and its pool size.
"""

from __future__ import annotations

from bench import authdb
from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, rate_figure
from bench.scenarios.base import Scenario, bench_users
from bench.servers import Server, Setup
from bench.wire import AuthClient, ProtocolError

DEFAULT_CLIENTS = 10
DEPTHS = (1, 16)


class AuthPlain(Workload):
    label = "auth"

    async def open(self, ctx: ClientContext) -> None:
        client = ctx.state["auth"] = await AuthClient.open_unix(ctx.endpoints.auth_client)
        await client.handshake()
        if b"PLAIN" not in client.mechanisms:
            raise ProtocolError(f"auth: PLAIN not offered ({client.mechanisms!r})")

    def __init__(self, depth: int) -> None:
        self.depth = depth

    async def op(self, ctx: ClientContext) -> None:
        client: AuthClient = ctx.state["auth"]
        pending = {client.send_plain(ctx.user, ctx.password) for _ in range(self.depth)}
        await client.drain()
        while pending:
            verb, ident, rest = await client.result()
            if verb != b"OK" or ident not in pending:
                raise ProtocolError(f"AUTH {ident}: {verb.decode()} {rest[:60]!r}")
            pending.discard(ident)
        ctx.count("requests", self.depth)

    async def close(self, ctx: ClientContext) -> None:
        client: AuthClient | None = ctx.state.pop("auth", None)
        if client is not None:
            await client.close()


class Auth(Scenario):
    name = "auth"
    protocols = ("auth",)
    summary = "auth-client socket: AUTH PLAIN requests/s"

    def setup(self) -> Setup:
        users = bench_users(self.options.clients or DEFAULT_CLIENTS)
        self.label = ""
        if self.options.backend != "passwd-file":
            # --backend: the users live in a real database server behind their own passdb.
            backend = authdb.start(self.options.backend, users)
            self.users = list(backend.users.items())
            self.label = f", {backend.name} ({backend.pool})"
            return Setup({}, extra_conf=backend.passdb)
        self.users = list(users.items())
        return Setup(users)

    def run(self, server: Server) -> list[Figure]:
        clients = self.options.clients or DEFAULT_CLIENTS
        figures = []
        # PAM: each login hashes the password with the system's yescrypt (~60/s on 2 cores):
        # bursts of 16 per client would outlast the load phase and count nothing.
        depths = (1,) if self.options.backend == "pam" else DEPTHS
        for depth in depths:
            stats = run_load(AuthPlain(depth), server.endpoints, self.users, clients=clients,
                             seconds=self.seconds(), warmup=self.warmup(),
                             workers=self.options.workers, seed=self.options.seed)
            figure = rate_figure(stats, f"{clients}x{depth} in flight{self.label}",
                                 "requests/s")
            figure.value = stats.counters.get("requests", 0) / stats.seconds
            figures.append(figure)  # latency percentiles are per burst of ``depth``
        return figures
