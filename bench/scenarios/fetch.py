"""``fetch-envelope``: FETCH 1:* (ENVELOPE) of a 10,000-message realistic INBOX, cold and warm.

Cold: the first FETCH after the store was linked in afresh (no uidlist, no index, no cache:
each server parses every header; the OS page cache is warm). Warm: the same FETCH again in
the same session, answered from what the first one cached (Dovecot's dovecot.index.cache,
cote's index cache). SELECT is not timed here (``select-large`` does that). Times are
seconds; lower is better. Each run re-links the store, so every run has a cold pass.
"""

from __future__ import annotations

import asyncio
import shutil
import time

from bench import store
from bench.report import Figure, time_figure
from bench.scenarios.base import Scenario, exists_of, template, timed_out
from bench.servers import Server, Setup
from bench.wire import Imap, ProtocolError
from tests.support.env import mail_user

USER, PASSWORD = "fetch0000", "pw-fetch"


async def fetch_twice(server: Server, expected: int) -> tuple[float, float]:
    ep = server.endpoints
    imap = await Imap.logged_in(ep.host, ep.imap, USER, PASSWORD)
    try:
        exists = exists_of((await imap.command(b"SELECT INBOX", keep=True)).lines)
        if exists != expected:
            raise ProtocolError(f"SELECT INBOX: {exists} EXISTS, expected {expected}")
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            fetched = await imap.command(b"FETCH 1:* (ENVELOPE)")
            times.append(time.perf_counter() - t0)
            if fetched.untagged != expected:
                raise ProtocolError(f"FETCH: {fetched.untagged} replies, expected {expected}")
        await imap.logout()
    finally:
        await imap.close()
    return times[0], times[1]


class FetchEnvelope(Scenario):
    name = "fetch-envelope"
    summary = "FETCH 1:* (ENVELOPE) of a 10k-message INBOX, cold and warm cache"
    timed_load = False

    def spec(self) -> store.StoreSpec:
        return store.StoreSpec("fetch", 300 if self.options.smoke else 10_000,
                               self.options.seed, folders=False)

    def setup(self) -> Setup:
        self.template = template(self.spec())
        return Setup({USER: PASSWORD}, {USER: self.template})

    def run(self, server: Server) -> list[Figure]:
        vmail = mail_user()
        target = server.dir / "mail" / USER
        shutil.rmtree(target, ignore_errors=True)
        store.link_tree(self.template, target, vmail.pw_uid, vmail.pw_gid)
        count = self.spec().count
        cold, warm = asyncio.run(timed_out(fetch_twice(server, count)))
        return [time_figure("cold", "FETCH ENVELOPE s", cold, messages=count),
                time_figure("warm", "FETCH ENVELOPE s", warm, messages=count)]
