"""``auth``: requests/s on the auth-client socket (what Postfix's SASL and login processes use).

Each client is one connection to ``$base_dir/auth-client`` (handshake once, not measured)
sending ``AUTH <id> PLAIN service=smtp secured resp=…`` for its user and expecting ``OK <id>``.
Two variants: one request in flight per connection (Postfix's smtpd) and 16 pipelined in one
write (a login process multiplexing its clients; it also takes the load generator's own
per-request cost out of the figure). A FAIL, or a reply for an id not asked, is an error.
With the passwd-file (the default), the same load runs again for users whose passwords are
SHA512-CRYPT hashes (``doveadm pw -s SHA512-CRYPT``'s format, 5,000 rounds), kept in a second
passwd-file passdb: what a hashed password costs per login, beside PLAIN's figure.
``--backend pgsql|mysql|sqlite|ldap|pam`` puts the users in that database instead of the
passwd-file (bench/authdb.py); the figure's label names it and its pool size.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench import authdb
from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, rate_figure
from bench.scenarios.base import Scenario, bench_users
from bench.servers import Server, Setup
from bench.wire import AuthClient, ProtocolError
from cote.auth import schemes

DEFAULT_CLIENTS = 10
DEPTHS = (1, 16)


def crypt_passdb(users: dict[str, str]) -> str:
    """A passwd-file of SHA512-CRYPT hashes (world-readable: Dovecot's auth reads it as its
    own user) and the passdb block naming it."""
    directory = Path(tempfile.mkdtemp(prefix="bench-auth-crypt-"))
    os.chmod(directory, 0o755)
    path = directory / "crypt-users"
    path.write_text("".join(f"{u}:{schemes.generate('SHA512-CRYPT', p.encode())}\n"
                            for u, p in users.items()))
    os.chmod(path, 0o644)
    return f"passdb {{\n  driver = passwd-file\n  args = {path}\n}}\n"


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
        self.crypt_users: list[tuple[str, str]] = []
        if self.options.backend != "passwd-file":
            # --backend: the users live in a real database server behind their own passdb.
            backend = authdb.start(self.options.backend, users)
            self.users = list(backend.users.items())
            self.label = f", {backend.name} ({backend.pool})"
            return Setup({}, extra_conf=backend.passdb)
        self.users = list(users.items())
        crypt = bench_users(len(users), prefix="crypt")
        self.crypt_users = list(crypt.items())
        return Setup(users, extra_conf=crypt_passdb(crypt))

    def run(self, server: Server) -> list[Figure]:
        figures = []
        # PAM: each login hashes the password with the system's yescrypt (~60/s on 2 cores):
        # bursts of 16 per client would outlast the load phase and count nothing.
        depths = (1,) if self.options.backend == "pam" else DEPTHS
        for depth in depths:
            figures.append(self._measure(server, self.users, depth, self.label))
        for depth in DEPTHS if self.crypt_users else ():
            figures.append(self._measure(server, self.crypt_users, depth, ", SHA512-CRYPT"))
        return figures

    def _measure(self, server: Server, users: list[tuple[str, str]], depth: int,
                 label: str) -> Figure:
        clients = self.options.clients or DEFAULT_CLIENTS
        stats = run_load(AuthPlain(depth), server.endpoints, users, clients=clients,
                         seconds=self.seconds(), warmup=self.warmup(),
                         workers=self.options.workers, seed=self.options.seed)
        figure = rate_figure(stats, f"{clients}x{depth} in flight{label}", "requests/s")
        figure.value = stats.counters.get("requests", 0) / stats.seconds
        return figure  # latency percentiles are per burst of ``depth``
