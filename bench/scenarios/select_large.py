"""``select-large``: SELECT and FETCH 1:* (UID FLAGS) of a 100,000-message INBOX, cold and warm.

The Maildir is generated on disk in Dovecot's format with small messages (1–4 KB), no index.
Cold: the first SELECT after the store was linked in afresh (the server builds its uidlist and
index then; the OS page cache is warm). Warm: the steady state once the server has indexed
the mailbox and nothing changed — an unmeasured session 2 s after the cold one, then, 2 s
later, the median of seven measured sessions (a Maildir reader rescans a directory whose
mtime is recent, and the cold SELECT itself moved new/ to cur/: Dovecot's second SELECT is
still a full rescan, its third takes under a millisecond; one sub-millisecond sample per run
varied by 2x between runs, for both servers). Each run re-links the store so every run has a
cold pass. Times are seconds; lower is better.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time

from bench import store
from bench.report import Figure, time_figure
from bench.scenarios.base import Scenario, exists_of, template, timed_out
from bench.servers import Server, Setup
from bench.wire import Imap, ProtocolError
from tests.support.env import mail_user

USER, PASSWORD = "large0000", "pw-large"
WARM_PAUSE = 2.0
WARM_SAMPLES = 7  # warm sessions per run; the run's figure is their median


async def select_and_fetch(server: Server, expected: int) -> tuple[float, float]:
    ep = server.endpoints
    imap = await Imap.logged_in(ep.host, ep.imap, USER, PASSWORD)
    try:
        t0 = time.perf_counter()
        selected = await imap.command(b"SELECT INBOX", keep=True)
        t1 = time.perf_counter()
        fetched = await imap.command(b"FETCH 1:* (UID FLAGS)")
        t2 = time.perf_counter()
        exists = exists_of(selected.lines)
        if exists != expected:
            raise ProtocolError(f"SELECT INBOX: {exists} EXISTS, expected {expected}")
        if fetched.untagged != expected:
            raise ProtocolError(f"FETCH 1:*: {fetched.untagged} replies, expected {expected}")
        await imap.logout()
    finally:
        await imap.close()
    return t1 - t0, t2 - t1


class SelectLarge(Scenario):
    name = "select-large"
    summary = "SELECT + FETCH 1:* (UID FLAGS) of a 100k-message INBOX, cold and warm"
    timed_load = False

    def spec(self) -> store.StoreSpec:
        count = 2_000 if self.options.smoke else 100_000
        return store.StoreSpec("large", count, self.options.seed, profile="small",
                               folders=False)

    def setup(self) -> Setup:
        self.template = template(self.spec())
        return Setup({USER: PASSWORD}, {USER: self.template})

    def relink(self, server: Server) -> None:
        vmail = mail_user()
        target = server.dir / "mail" / USER
        shutil.rmtree(target, ignore_errors=True)
        store.link_tree(self.template, target, vmail.pw_uid, vmail.pw_gid)

    def run(self, server: Server) -> list[Figure]:
        count = self.spec().count
        self.relink(server)
        figures = []
        select_s, fetch_s = asyncio.run(timed_out(select_and_fetch(server, count)))
        figures.append(time_figure("cold", "SELECT s", select_s, messages=count))
        figures.append(time_figure("cold", "FETCH 1:* s", fetch_s, messages=count))
        time.sleep(WARM_PAUSE)
        asyncio.run(timed_out(select_and_fetch(server, count)))  # settle, unmeasured
        time.sleep(WARM_PAUSE)
        samples = [asyncio.run(timed_out(select_and_fetch(server, count)))
                   for _ in range(WARM_SAMPLES)]
        figures.append(time_figure("warm", "SELECT s", statistics.median(s for s, _ in samples),
                                   messages=count, samples=len(samples)))
        figures.append(time_figure("warm", "FETCH 1:* s",
                                   statistics.median(f for _, f in samples),
                                   messages=count, samples=len(samples)))
        return figures
