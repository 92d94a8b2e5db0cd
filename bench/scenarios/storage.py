"""``storage``: the storage layer's costs through IMAP, beside Dovecot on the same store.

* **sync**: SELECT INBOX of a 100,000-message Maildir (``--smoke``: 500). Cold: the store is
  hard-linked in afresh, so neither cote's ``cote.index.sqlite*`` nor Dovecot's
  ``dovecot.index*``/``dovecot-uidlist`` exist (the server scans, builds its uidlist and
  index). Warm: SELECT again once indexed (an unmeasured settle session between, as in
  ``select-large``). Measured via IMAP SELECT for both servers.
* **status**: STATUS (MESSAGES UNSEEN UIDNEXT) of each of 1,000 folders (``--smoke``: 20) of
  3 messages in one session, cold (fresh store) and warm (the same again).
* **parse**: FETCH 1 (BODYSTRUCTURE) of a 20 MB message (``--smoke``: 1 MB), cold (fresh
  store: nothing cached, the message is parsed).

The stores come from ``bench.store``'s seeded generator. Times are seconds; lower is better.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from bench import store
from bench.report import Figure, time_figure
from bench.scenarios.base import Scenario, exists_of, template, timed_out
from bench.servers import Server, Setup
from bench.wire import Imap, ProtocolError
from tests.support.env import mail_user

USERS = {"sync0000": "pw-sync", "folders0000": "pw-folders", "big0000": "pw-big"}
WARM_PAUSE = 2.0
PER_FOLDER = 3


def cached(key: str, build: Callable[[Path], None]) -> Path:
    """The template ``key`` under ``bench.store``'s cache, built once by ``build(dir)``."""
    final = store.CACHE_ROOT / key
    if (final / ".complete").exists():
        return final
    store.CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    building = store.CACHE_ROOT / f".{key}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    build(building)
    (building / ".complete").touch()
    try:
        os.rename(building, final)
    except OSError:  # another process built it first
        shutil.rmtree(building, ignore_errors=True)
    return final


def folders_template(count: int, seed: int) -> Path:
    """A Maildir++ store with ``count`` folders of ``PER_FOLDER`` small messages (cached)."""
    vmail = mail_user()

    def build(root: Path) -> None:
        store.write_mailbox(root, seed, 1, "small", vmail.pw_uid, vmail.pw_gid)
        for i in range(count):
            folder = root / f".folder{i:04d}"
            store.write_mailbox(folder, seed + i, PER_FOLDER, "small", vmail.pw_uid,
                                vmail.pw_gid, new_fraction=0.0)
            (folder / "maildirfolder").touch()
            os.chown(folder / "maildirfolder", vmail.pw_uid, vmail.pw_gid)

    return cached(f"storage-folders-g{store.GENERATOR_VERSION}-s{seed}-f{count}", build)


def big_template(size: int, seed: int) -> Path:
    """A Maildir whose INBOX holds one generated message of about ``size`` bytes (cached)."""
    vmail = mail_user()

    def build(root: Path) -> None:
        for sub in ("", "cur", "new", "tmp"):
            (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(root / sub, vmail.pw_uid, vmail.pw_gid)
        message = store.MessageGenerator(seed, "realistic").message(0, size=size)
        path = root / "cur" / store.maildir_name(0, message.date, message.data, "S")
        path.write_bytes(message.data)
        os.chown(path, vmail.pw_uid, vmail.pw_gid)

    return cached(f"storage-big-g{store.GENERATOR_VERSION}-s{seed}-b{size}", build)


async def session(server: Server, user: str) -> Imap:
    ep = server.endpoints
    return await Imap.logged_in(ep.host, ep.imap, user, USERS[user])


async def select_inbox(server: Server, expected: int) -> float:
    imap = await session(server, "sync0000")
    try:
        t0 = time.perf_counter()
        reply = await imap.command(b"SELECT INBOX", keep=True)
        elapsed = time.perf_counter() - t0
        if exists_of(reply.lines) != expected:
            raise ProtocolError(f"SELECT INBOX: {exists_of(reply.lines)} EXISTS, "
                                f"expected {expected}")
        await imap.logout()
    finally:
        await imap.close()
    return elapsed


async def status_all(server: Server, folders: int) -> float:
    imap = await session(server, "folders0000")
    try:
        t0 = time.perf_counter()
        for i in range(folders):
            reply = await imap.command(b"STATUS folder%04d (MESSAGES UNSEEN UIDNEXT)" % i,
                                       keep=True)
            if not reply.lines or b"MESSAGES %d" % PER_FOLDER not in reply.lines[0]:
                raise ProtocolError(f"STATUS folder{i:04d}: {reply.lines!r}")
        elapsed = time.perf_counter() - t0
        await imap.logout()
    finally:
        await imap.close()
    return elapsed


async def bodystructure(server: Server) -> float:
    imap = await session(server, "big0000")
    try:
        await imap.command(b"SELECT INBOX")
        t0 = time.perf_counter()
        reply = await imap.command(b"FETCH 1 (BODYSTRUCTURE)", keep=True)
        elapsed = time.perf_counter() - t0
        if not reply.lines or b"BODYSTRUCTURE" not in reply.lines[0]:
            raise ProtocolError(f"FETCH BODYSTRUCTURE: {reply.lines!r}")
        await imap.logout()
    finally:
        await imap.close()
    return elapsed


class StorageBench(Scenario):
    name = "storage"
    summary = ("Maildir sync of 100k messages cold/warm (SELECT), STATUS of 1,000 folders, "
               "BODYSTRUCTURE of a 20 MB message")
    timed_load = False

    def sizes(self) -> tuple[int, int, int]:
        if self.options.smoke:
            return 500, 20, 1_000_000
        return 100_000, 1_000, 20_000_000

    def setup(self) -> Setup:
        count, folders, size = self.sizes()
        spec = store.StoreSpec("storage-sync", count, self.options.seed, profile="small",
                               folders=False)
        self.templates = {"sync0000": template(spec),
                          "folders0000": folders_template(folders, self.options.seed),
                          "big0000": big_template(size, self.options.seed)}
        return Setup(dict(USERS), dict(self.templates))

    def relink(self, server: Server, user: str) -> None:
        """A fresh hard-linked copy: no index of either server, no uidlist, nothing cached."""
        vmail = mail_user()
        target = server.dir / "mail" / user
        shutil.rmtree(target, ignore_errors=True)
        store.link_tree(self.templates[user], target, vmail.pw_uid, vmail.pw_gid)

    def run(self, server: Server) -> list[Figure]:
        count, folders, size = self.sizes()
        for user in USERS:
            self.relink(server, user)
        figures = []
        for state in ("cold", "warm"):
            if state == "warm":
                time.sleep(WARM_PAUSE)
                asyncio.run(timed_out(select_inbox(server, count)))  # settle, unmeasured
                time.sleep(WARM_PAUSE)
            seconds = asyncio.run(timed_out(select_inbox(server, count)))
            figures.append(time_figure(state, "sync (IMAP SELECT) s", seconds, messages=count))
        for state in ("cold", "warm"):
            seconds = asyncio.run(timed_out(status_all(server, folders)))
            figures.append(time_figure(state, f"STATUS x{folders} s", seconds, folders=folders))
        seconds = asyncio.run(timed_out(bodystructure(server)))
        figures.append(time_figure("cold", f"BODYSTRUCTURE {size // 1_000_000} MB s", seconds,
                                   bytes=size))
        return figures
