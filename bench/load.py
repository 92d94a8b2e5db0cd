"""The load generator: asyncio clients spread over worker processes, results merged.

A ``Workload`` says what one client does: ``open`` (not measured: connect, log in for
long-lived connections), ``op`` (measured and repeated: a whole session, one RETR, one auth
request …) and ``close``. ``run_load`` forks ``workers`` processes (so the clients use both
cores without sharing a GIL), each running its share of the clients on one event loop (uvloop
when installed); all of them start at the same monotonic instant, measure after ``warmup`` and
stop at the end of the window. Ops that end inside the window count; errors count whenever
they happen and are returned with samples. ``hold_connections`` opens N connections, keeps
them open while the caller measures the server, then closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import random
import resource
import time
import traceback
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from bench.histogram import Histogram

try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a cote dependency on Linux
    _uvloop = None  # type: ignore[assignment]
from bench.servers import Endpoints
from bench.wire import Connection

OP_TIMEOUT = 120.0
OPEN_TIMEOUT = 60.0
_FORK = multiprocessing.get_context("fork")


@dataclass
class ClientContext:
    """One simulated client: its identity, private RNG and per-client state."""

    cid: int
    user: str
    password: str
    endpoints: Endpoints
    rng: random.Random
    state: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    def count(self, name: str, amount: float = 1) -> None:
        """Add to a counter that is kept only if the current op is counted."""
        self.counters[name] = self.counters.get(name, 0) + amount

    def drop_connections(self) -> None:
        for value in self.state.values():
            if isinstance(value, Connection):
                value.abort()
        self.state.clear()


class Workload(ABC):
    """What one client does; subclasses define ``op`` and usually ``open``/``close``."""

    label = "op"

    async def open(self, ctx: ClientContext) -> None:  # noqa: B027 - optional hook
        """Prepare the client (not measured)."""

    @abstractmethod
    async def op(self, ctx: ClientContext) -> None:
        """One measured unit of work."""

    async def close(self, ctx: ClientContext) -> None:
        """Finish the client politely (not measured)."""
        ctx.drop_connections()


@dataclass
class Stats:
    """One worker's (or the merged) outcome of a load run."""

    ops: int = 0
    completed: int = 0  # every op that finished, warm-up and window edges included
    seconds: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    counters: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def error(self, where: str, exc: BaseException) -> None:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            text = "timed out"
        self.errors[f"{where}: {type(exc).__name__}: {text}"[:160]] += 1

    def merge(self, other: Stats) -> None:
        self.ops += other.ops
        self.completed += other.completed
        self.latency.merge(other.latency)
        self.counters.update(other.counters)
        self.errors.update(other.errors)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def _use_fast_loop() -> None:
    if _uvloop is not None:
        asyncio.set_event_loop_policy(_uvloop.EventLoopPolicy())


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _step(stats: Stats, where: str, step: Callable[[ClientContext], Awaitable[None]],
                ctx: ClientContext) -> bool:
    """Run an unmeasured open/close step; a failure is counted and drops the connections."""
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            await step(ctx)
    except Exception as exc:
        stats.error(where, exc)
        ctx.drop_connections()
        return False
    return True


def _receive(pipe: Pipe, deadline: float, stats: Stats, late: str) -> object:
    """A worker's message, or None after counting why there is none."""
    if not pipe.poll(max(0.0, deadline - time.monotonic())):
        stats.errors[late] += 1
        return None
    result = pipe.recv()
    if isinstance(result, str):  # the worker's traceback
        stats.errors[f"load worker crashed: {result.strip().splitlines()[-1]}"] += 1
        return None
    return result


async def _client(workload: Workload, ctx: ClientContext, stats: Stats, start: float,
                  measure_from: float, end: float) -> None:
    opened = await _step(stats, "open", workload.open, ctx)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    while True:
        if not opened:
            if time.monotonic() >= end:
                return
            await asyncio.sleep(0.05)
            opened = await _step(stats, "open", workload.open, ctx)
            continue
        began = time.monotonic()
        if began >= end:
            break
        ctx.counters.clear()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                await workload.op(ctx)
        except Exception as exc:
            stats.error(workload.label, exc)
            ctx.drop_connections()
            opened = False
            continue
        elapsed = time.perf_counter() - t0
        finished = time.monotonic()
        stats.completed += 1
        if measure_from <= began and finished <= end:
            stats.ops += 1
            stats.latency.add(elapsed)
            if ctx.counters:
                stats.counters.update(ctx.counters)
    await _step(stats, "close", workload.close, ctx)


async def _run_clients(workload: Workload, contexts: list[ClientContext], start: float,
                       measure_from: float, end: float) -> Stats:
    stats = Stats()
    await asyncio.gather(*(_client(workload, ctx, stats, start, measure_from, end)
                           for ctx in contexts))
    return stats


def _run_share(workload: Workload, contexts: list[ClientContext], start: float,
               measure_from: float, end: float) -> Stats:
    return asyncio.run(_run_clients(workload, contexts, start, measure_from, end))


def _worker_main(body: Callable[[], Stats], pipe: Pipe) -> None:
    try:
        _raise_fd_limit()
        _use_fast_loop()
        result: Stats | str = body()
    except BaseException:
        result = traceback.format_exc()
    pipe.send(result)
    pipe.close()
    os._exit(0)


def _contexts(endpoints: Endpoints, users: Sequence[tuple[str, str]], clients: int,
              seed: int) -> list[ClientContext]:
    return [ClientContext(cid, *users[cid % len(users)], endpoints,
                          random.Random(seed * 7_919 + cid)) for cid in range(clients)]


def _collect(bodies: Sequence[Callable[[], Stats]], timeout: float) -> Stats:
    processes, pipes = [], []
    for body in bodies:
        parent, child = _FORK.Pipe(duplex=False)
        process = _FORK.Process(target=_worker_main, args=(body, child), daemon=True)
        process.start()
        child.close()
        processes.append(process)
        pipes.append(parent)
    merged = Stats()
    deadline = time.monotonic() + timeout
    for process, pipe in zip(processes, pipes, strict=True):
        result = _receive(pipe, deadline, merged, "load worker did not finish in time")
        if isinstance(result, Stats):
            merged.merge(result)
        process.kill()  # no-op when it has exited
        process.join(5)
    return merged


def run_load(workload: Workload, endpoints: Endpoints, users: Sequence[tuple[str, str]], *,
             clients: int, seconds: float, warmup: float = 0.0, workers: int = 0,
             seed: int = 1) -> Stats:
    """Run ``clients`` clients for ``warmup + seconds``; ops/s are over ``seconds``."""
    workers = max(1, min(workers or os.cpu_count() or 1, clients))
    contexts = _contexts(endpoints, users, clients, seed)
    start = time.monotonic() + 0.3 + 0.002 * clients  # time for forks and opens
    measure_from = start + warmup
    end = measure_from + seconds
    bodies = [functools.partial(_run_share, workload, contexts[w::workers], start, measure_from,
                                end) for w in range(workers)]
    stats = _collect(bodies, timeout=end - time.monotonic() + OP_TIMEOUT + OPEN_TIMEOUT)
    stats.seconds = seconds
    return stats


@dataclass
class Held:
    """Connections kept open by worker processes until ``release``."""

    pipes: list[Pipe]
    processes: list[Any]
    opened: int = 0
    stats: Stats = field(default_factory=Stats)

    def release(self, timeout: float = 120.0) -> Stats:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send("release")
        deadline = time.monotonic() + timeout
        for process, pipe in zip(self.processes, self.pipes, strict=True):
            result = _receive(pipe, deadline, self.stats, "load worker did not close in time")
            if isinstance(result, Stats):
                self.stats.merge(result)
            process.kill()  # no-op when it has exited
            process.join(5)
        return self.stats


async def _hold_share(workload: Workload, contexts: list[ClientContext], pipe: Pipe,
                      parallel: int) -> Stats:
    stats = Stats()
    gate = asyncio.Semaphore(parallel)

    async def open_one(ctx: ClientContext) -> bool:
        async with gate:
            return await _step(stats, "open", workload.open, ctx)

    results = await asyncio.gather(*(open_one(ctx) for ctx in contexts))
    opened = [ctx for ctx, ok in zip(contexts, results, strict=True) if ok]
    pipe.send((len(opened), stats))
    stats = Stats()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)

    async def close_one(ctx: ClientContext) -> bool:
        async with gate:
            return await _step(stats, "close", workload.close, ctx)

    await asyncio.gather(*(close_one(ctx) for ctx in opened))
    return stats


def _hold_main(workload: Workload, contexts: list[ClientContext], pipe: Pipe,
               parallel: int) -> None:
    try:
        _raise_fd_limit()
        _use_fast_loop()
        result: Stats | str = asyncio.run(_hold_share(workload, contexts, pipe, parallel))
    except BaseException:
        result = traceback.format_exc()
    with contextlib.suppress(OSError):
        pipe.send(result)
    os._exit(0)


def hold_connections(workload: Workload, endpoints: Endpoints,
                     users: Sequence[tuple[str, str]], *, connections: int, workers: int = 0,
                     parallel: int = 16, seed: int = 1) -> Held:
    """Open ``connections`` clients (``workload.open``) and keep them open; see ``Held``."""
    workers = max(1, min(workers or os.cpu_count() or 1, connections))
    contexts = _contexts(endpoints, users, connections, seed)
    held = Held([], [])
    for w in range(workers):
        parent, child = _FORK.Pipe(duplex=True)
        process = _FORK.Process(target=_hold_main,
                                args=(workload, contexts[w::workers], child, parallel),
                                daemon=True)
        process.start()
        held.pipes.append(parent)
        held.processes.append(process)
    deadline = time.monotonic() + OPEN_TIMEOUT + 5 + connections * 0.1
    for pipe in held.pipes:
        result = _receive(pipe, deadline, held.stats,
                          "load worker did not open its connections in time")
        if isinstance(result, tuple):
            opened, stats = result
            held.opened += opened
            held.stats.merge(stats)
    return held
