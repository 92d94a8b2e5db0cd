"""``imap-mixed``: whole IMAP sessions per client — the everyday load of a mail client.

Each session: LOGIN, SELECT INBOX, FETCH 1:* (UID FLAGS) pipelined with FETCH of the newest
20 (ENVELOPE, size, date), FETCH BODY.PEEK[] of a random message, STORE ±\\Flagged, APPEND a
small message, UID STORE \\Deleted + EXPUNGE of that message (the mailbox stays the same
size), LOGOUT. Every client has its own user with a 300-message realistic INBOX, so clients
never contend on a mailbox; measured at 1, 10 and 50 concurrent clients.
"""

from __future__ import annotations

from bench import store
from bench.load import ClientContext, Workload, run_load
from bench.report import Figure, cpu_figure, rate_figure
from bench.scenarios.base import Scenario, appenduid_of, bench_users, exists_of, template
from bench.servers import Server, Setup
from bench.wire import Imap, ProtocolError

LEVELS = (1, 10, 50)


class MixedSession(Workload):
    label = "session"

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    async def op(self, ctx: ClientContext) -> None:
        ep = ctx.endpoints
        imap = ctx.state["imap"] = await Imap.logged_in(ep.host, ep.imap, ctx.user, ctx.password)
        exists = exists_of((await imap.command(b"SELECT INBOX", keep=True)).lines)
        if exists <= 0:
            raise ProtocolError(f"SELECT INBOX: {exists} messages")
        flags_tag = imap.send(b"FETCH 1:* (UID FLAGS)")
        envelope_tag = imap.send(b"FETCH %d:* (UID RFC822.SIZE INTERNALDATE ENVELOPE)"
                                 % max(1, exists - 19))
        await imap.drain()
        flags = await imap.reply(flags_tag)
        envelopes = await imap.reply(envelope_tag)
        # Pipelined: the server may interleave both commands' untagged replies, so only
        # their sum is attributable.
        expected = exists + min(exists, 20)
        if flags.status != b"OK" or envelopes.status != b"OK" or (
                flags.untagged + envelopes.untagged < expected):
            raise ProtocolError(f"FETCH FLAGS + ENVELOPE: {flags.status!r} {envelopes.status!r},"
                                f" {flags.untagged + envelopes.untagged}/{expected} replies")
        n = ctx.rng.randint(1, exists)
        body = await imap.command(b"FETCH %d (BODY.PEEK[])" % n)
        if body.literal_bytes <= 0:
            raise ProtocolError(f"FETCH BODY[] of {n}: no literal")
        ctx.count("bytes", body.literal_bytes)
        sign = b"+" if ctx.rng.random() < 0.5 else b"-"
        await imap.command(b"STORE %d %sFLAGS (\\Flagged)" % (n, sign))
        appended = await imap.append(b"INBOX", b"\\Seen",
                                     self.messages[ctx.rng.randrange(len(self.messages))])
        uid = appenduid_of(appended.text)
        if uid < 0:
            raise ProtocolError(f"APPEND: no APPENDUID in {appended.text[:60]!r}")
        await imap.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        expunged = await imap.command(b"EXPUNGE", keep=True)
        gone = sum(1 for line in expunged.lines or () if line.endswith(b" EXPUNGE"))
        if gone != 1:
            raise ProtocolError(f"EXPUNGE: {gone} messages expunged, expected 1")
        await imap.logout()
        await imap.close()
        ctx.state.clear()


def append_messages(seed: int) -> list[bytes]:
    """Small outgoing-style messages (2–30 KB) for APPEND, CRLF line ends."""
    generator = store.MessageGenerator(seed + 104_729)
    sizes = (2_000, 3_500, 5_000, 8_000, 12_000, 30_000)
    return [generator.message(i, size).data.replace(b"\n", b"\r\n")
            for i, size in enumerate(sizes)]


class ImapMixed(Scenario):
    name = "imap-mixed"
    summary = "IMAP sessions/s: LOGIN SELECT FETCH STORE APPEND EXPUNGE LOGOUT at 1/10/50 clients"

    def levels(self) -> tuple[int, ...]:
        return (self.options.clients,) if self.options.clients else LEVELS

    def spec(self) -> store.StoreSpec:
        return store.StoreSpec("inbox", 30 if self.options.smoke else 300, self.options.seed)

    def setup(self) -> Setup:
        users = bench_users(max(self.levels()))
        inbox = template(self.spec())
        self.users = list(users.items())
        self.messages = append_messages(self.options.seed)
        return Setup(users, {u: inbox for u in users})

    def run(self, server: Server) -> list[Figure]:
        figures = []
        for clients in self.levels():
            cpu = server.cpu_seconds()
            stats = run_load(MixedSession(self.messages), server.endpoints, self.users,
                             clients=clients, seconds=self.seconds(), warmup=self.warmup(),
                             workers=self.options.workers, seed=self.options.seed)
            variant = f"{clients} client" + ("s" if clients > 1 else "")
            figure = rate_figure(stats, variant, "sessions/s")
            figure.extra["body_bytes"] = stats.counters.get("bytes", 0)
            figures.append(figure)
            figures.append(cpu_figure(stats, variant, "CPU ms/session",
                                      server.cpu_seconds() - cpu))
        return figures
