"""``managesieve``: ManageSieve sessions/s at 10 clients, one user each.

Session: greeting (capabilities), AUTHENTICATE PLAIN with an initial response, PUTSCRIPT of a
~600-byte filter (checked by the server's compiler), SETACTIVE, LISTSCRIPTS, GETSCRIPT,
LOGOUT: what a webmail's filter editor does on every save. The store ends the same for both
servers (the same script under the same name, active).
"""

from __future__ import annotations

import base64
import re

from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, rate_figure
from bench.scenarios.base import Scenario, bench_users
from bench.servers import Server, Setup
from bench.wire import Connection, ProtocolError

DEFAULT_CLIENTS = 10
SCRIPT = b"".join([
    b'require ["fileinto", "envelope", "imap4flags", "vacation"];\r\n',
    b'if header :contains "list-id" "<dev.lists.example.org>" {\r\n',
    b'  fileinto "Lists/dev";\r\n  stop;\r\n}\r\n',
    b'if anyof (header :contains "subject" "[SPAM]", exists "x-spam-flag") {\r\n',
    b'  addflag "\\\\Seen";\r\n  fileinto "Junk";\r\n  stop;\r\n}\r\n',
    b'if envelope :is "from" "boss@example.org" {\r\n  addflag "$Important";\r\n}\r\n',
    b'vacation :days 7 :subject "Away" :addresses ["me@example.org"]\r\n',
    b'  text:\r\nI am away until Monday.\r\n.\r\n;\r\n',
    b"# " + b"x" * 200 + b"\r\n",
])
_LITERAL = re.compile(rb"\{(\d+)\}$")


class Sieve(Connection):
    """ManageSieve client side: responses end with OK/NO/BYE; literals are skipped."""

    async def response(self, what: str) -> int:
        """Read one response; returns the octets of the literals in it."""
        literal = 0
        while True:
            line = await self.readline()
            m = _LITERAL.search(line)
            if m:
                literal += int(m.group(1))
                await self.skip(int(m.group(1)))
                continue
            if line.startswith(b"OK"):
                return literal
            if line.startswith((b"NO", b"BYE")):
                raise ProtocolError(f"{what}: {line[:80].decode(errors='replace')}")

    async def command(self, command: bytes, what: str) -> int:
        self.write(command)
        await self.drain()
        return await self.response(what)


class SieveSession(Workload):
    label = "session"

    async def op(self, ctx: ClientContext) -> None:
        ep = ctx.endpoints
        sieve = await Sieve.open(ep.host, ep.sieve)
        try:
            await sieve.response("greeting")
            token = base64.b64encode(f"\0{ctx.user}\0{ctx.password}".encode())
            await sieve.command(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n', "AUTHENTICATE")
            await sieve.command(b'PUTSCRIPT "filters" {%d+}\r\n' % len(SCRIPT) + SCRIPT
                                + b"\r\n", "PUTSCRIPT")
            await sieve.command(b'SETACTIVE "filters"\r\n', "SETACTIVE")
            await sieve.command(b"LISTSCRIPTS\r\n", "LISTSCRIPTS")
            got = await sieve.command(b'GETSCRIPT "filters"\r\n', "GETSCRIPT")
            if got != len(SCRIPT):
                raise ProtocolError(f"GETSCRIPT: {got} octets, stored {len(SCRIPT)}")
            await sieve.command(b"LOGOUT\r\n", "LOGOUT")
        finally:
            await sieve.close()


class ManageSieveBench(Scenario):
    name = "managesieve"
    protocols = ("sieve",)
    summary = "ManageSieve sessions/s (login, PUTSCRIPT, SETACTIVE, LIST, GET) at 10 clients"

    def setup(self) -> Setup:
        users = bench_users(self.options.clients or DEFAULT_CLIENTS, prefix="sieve")
        self.users = list(users.items())
        return Setup(users, protocols="imap pop3 lmtp sieve")

    def run(self, server: Server) -> list[Figure]:
        clients = self.options.clients or DEFAULT_CLIENTS
        stats = run_load(SieveSession(), server.endpoints, self.users, clients=clients,
                         seconds=self.seconds(), warmup=self.warmup(),
                         workers=self.options.workers, seed=self.options.seed)
        return [rate_figure(stats, f"{clients} clients", "sessions/s")]
