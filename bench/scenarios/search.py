"""``search``: SEARCH latency on a 10,000-message realistic INBOX (no FTS plugin).

Queries with known answers planted by the generator: SUBJECT (every 50th message and its
replies), FROM (a surname), TEXT and BODY (a word in every 100th body). Before the first timed
pass each server answers every query once (its caches are built then); each run then times
every query, repeated for up to a quarter of --seconds, and reports the median in seconds.
The hit counts of both servers are recorded so a wrong answer is visible.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench import store
from bench.report import Figure, time_figure
from bench.scenarios.base import Scenario, exists_of, template, timed_out
from bench.servers import Server, Setup
from bench.wire import Imap, ProtocolError

USER, PASSWORD = "search0000", "pw-search"
QUERIES = (
    ("SUBJECT", b'SUBJECT "%s"' % store.SEARCH_SUBJECT_WORD.encode()),
    ("FROM", b'FROM "novak"'),
    ("TEXT", b'TEXT "%s"' % store.SEARCH_BODY_WORD.encode()),
    ("BODY", b'BODY "%s"' % store.SEARCH_BODY_WORD.encode()),
)


def hits(lines: list[bytes] | None) -> int:
    for line in lines or ():
        if line.startswith(b"* SEARCH"):
            return len(line.split()) - 2
    raise ProtocolError("SEARCH: no * SEARCH reply")


class Search(Scenario):
    name = "search"
    summary = "SEARCH SUBJECT/FROM/TEXT/BODY latency on 10k messages"

    def spec(self) -> store.StoreSpec:
        return store.StoreSpec("search", 300 if self.options.smoke else 10_000,
                               self.options.seed)

    def setup(self) -> Setup:
        self.warmed: set[str] = set()
        return Setup({USER: PASSWORD}, {USER: template(self.spec())})

    async def _run(self, server: Server) -> list[Figure]:
        ep = server.endpoints
        imap = await Imap.logged_in(ep.host, ep.imap, USER, PASSWORD)
        budget = max(0.2, self.seconds() / 4)
        figures = []
        try:
            exists = exists_of((await imap.command(b"SELECT INBOX", keep=True)).lines)
            if exists != self.spec().count:
                raise ProtocolError(f"SELECT INBOX: {exists} EXISTS, expected {self.spec().count}")
            if server.name not in self.warmed:
                for _, query in QUERIES:
                    await imap.command(b"SEARCH " + query, keep=True)
                self.warmed.add(server.name)
            for label, query in QUERIES:
                times: list[float] = []
                found = 0
                started = time.monotonic()
                while not times or time.monotonic() - started < budget:
                    t0 = time.perf_counter()
                    reply = await imap.command(b"SEARCH " + query, keep=True)
                    times.append(time.perf_counter() - t0)
                    found = hits(reply.lines)
                figures.append(time_figure(label, "SEARCH s", statistics.median(times),
                                           hits=found, repeats=len(times)))
            await imap.logout()
        finally:
            await imap.close()
        return figures

    def run(self, server: Server) -> list[Figure]:
        return asyncio.run(timed_out(self._run(server)))
