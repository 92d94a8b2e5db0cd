"""``auth``: requests/s on the auth-client socket (what Postfix's SASL and login processes use).

Each client is one connection to ``$base_dir/auth-client`` (handshake once, not measured) that
sends ``AUTH <id> PLAIN service=smtp secured resp=…`` for its user and waits for ``OK <id>``,
one request in flight, like Postfix's smtpd. A FAIL or a reply for another id is an error.
"""

from __future__ import annotations

from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, rate_figure
from bench.scenarios.base import Scenario, bench_users
from bench.servers import Server, Setup
from bench.wire import AuthClient, ProtocolError

DEFAULT_CLIENTS = 10


class AuthPlain(Workload):
    label = "auth"

    async def open(self, ctx: ClientContext) -> None:
        client = ctx.state["auth"] = await AuthClient.open_unix(ctx.endpoints.auth_client)
        await client.handshake()
        if b"PLAIN" not in client.mechanisms:
            raise ProtocolError(f"auth: PLAIN not offered ({client.mechanisms!r})")

    async def op(self, ctx: ClientContext) -> None:
        client: AuthClient = ctx.state["auth"]
        sent = client.send_plain(ctx.user, ctx.password)
        await client.drain()
        verb, ident, rest = await client.result()
        if verb != b"OK" or ident != sent:
            raise ProtocolError(f"AUTH {sent}: {verb.decode()} {ident} {rest[:60]!r}")

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
        self.users = list(users.items())
        return Setup(users)

    def run(self, server: Server) -> list[Figure]:
        clients = self.options.clients or DEFAULT_CLIENTS
        stats = run_load(AuthPlain(), server.endpoints, self.users, clients=clients,
                         seconds=self.seconds(), warmup=self.warmup(),
                         workers=self.options.workers, seed=self.options.seed)
        return [rate_figure(stats, f"{clients} conns", "requests/s")]
