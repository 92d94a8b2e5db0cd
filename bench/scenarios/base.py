"""What every scenario shares: options, the Scenario interface, users and helpers."""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from bench import store
from bench.report import Figure
from bench.servers import Server, Setup
from tests.support.env import mail_user

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    seconds: float
    clients: int | None  # None: the scenario's default levels
    runs: int
    smoke: bool
    warmup: float
    workers: int
    seed: int
    connections: int | None = None  # idle-memory: N connections (default 1000, smoke 20)
    backend: str = "passwd-file"  # auth: the passdb that answers (bench/authdb.py)


class Scenario(ABC):
    """One benchmark: what the servers need (``setup``) and one run against one server."""

    name: ClassVar[str]
    protocols: ClassVar[tuple[str, ...]] = ("imap",)
    summary: ClassVar[str] = ""
    timed_load: ClassVar[bool] = True  # has load phases of --seconds

    def __init__(self, options: Options) -> None:
        self.options = options

    @abstractmethod
    def setup(self) -> Setup:
        """Users, mail and config every server of this scenario gets (built before starting)."""

    @abstractmethod
    def run(self, server: Server) -> list[Figure]:
        """One run against a started server."""

    def seconds(self) -> float:
        """Measured seconds per load phase (half a second in smoke mode)."""
        return min(self.options.seconds, 0.5) if self.options.smoke else self.options.seconds

    def warmup(self) -> float:
        return 0.0 if self.options.smoke else self.options.warmup


def bench_users(count: int, prefix: str = "bench") -> dict[str, str]:
    return {f"{prefix}{i:04d}": f"pw-{prefix}-{i:04d}" for i in range(count)}


def template(spec: store.StoreSpec) -> Path:
    vmail = mail_user()
    return store.template(spec, vmail.pw_uid, vmail.pw_gid)


STEP_TIMEOUT = 600.0


async def timed_out(step: Awaitable[T], seconds: float = STEP_TIMEOUT) -> T:
    """``step`` with a deadline: a server that hangs fails the run instead of the bench."""
    async with asyncio.timeout(seconds):
        return await step


_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def exists_of(lines: list[bytes] | None) -> int:
    for line in lines or ():
        m = _EXISTS.match(line)
        if m:
            return int(m.group(1))
    return -1


def appenduid_of(text: bytes) -> int:
    m = _APPENDUID.search(text)
    return int(m.group(1)) if m else -1
